"""--quick run of the SST-2 token-deletion comparison for a recurrent family (xLSTM): the model learns (above
chance on the 872 sentences of test.tsv), and LRP's MoRF-LeRF gap is above random relevance's."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
SST2 = ROOT.parent / "shared" / "data" / "sst2"


@pytest.mark.slow  # (~1 minute alone, 2-3 minutes on a loaded machine)
@pytest.mark.skipif(not (SST2 / "train.tsv").exists(), reason="needs ../shared/data/sst2")
def test_sst2_recurrent_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("sst2_recurrent", ROOT / "nlp_examples" / "sst2_recurrent.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sst2_recurrent"] = module
    spec.loader.exec_module(module)
    result = module.main(["--quick", "--data", str(SST2), "--out", str(tmp_path)])
    assert result["accuracy"] > 0.6  # 6,000 phrases, 1 epoch; two balanced classes
    assert set(result["rows"]) == {"remove", "<unk>"}
    for rows in result["rows"].values():
        names = {row["explainer"] for row in rows}
        assert names == {"LRP (signal-takes-all)", "LRP (half rule)", "gradient x input", "sensitivity (gradient²)",
                         "random"}
        assert all(math.isfinite(row["aopc"]) and row["ci_low"] <= row["aopc"] <= row["ci_high"] for row in rows)
        assert all(row["n"] == 60 for row in rows)
    gap = {row["explainer"]: row for row in result["rows"]["remove"] if row["order"] == "morf-lerf gap"}
    # removing LRP's most relevant tokens first hurts the prediction more than removing its least relevant ones, by
    # more than random order does (whose expected gap is 0): the lower CI bound of LRP's gap is above random's gap
    for name in ("LRP (signal-takes-all)", "LRP (half rule)"):
        assert gap[name]["ci_low"] > gap["random"]["aopc"], name
    assert (tmp_path / "results.json").exists() and "morf-lerf gap" in (tmp_path / "table.md").read_text()
