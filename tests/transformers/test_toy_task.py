"""--quick run of the toy task with a tiny BERT trained from scratch: it learns, and AttnLRP / CP-LRP (no
CoverageWarning: the example raises on one) put the two marked tokens on top far more often than random relevance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


def test_toy_task_transformer_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("toy_task_transformer",
                                                  ROOT / "nlp_examples" / "toy_task_transformer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_task_transformer"] = module
    spec.loader.exec_module(module)
    result = module.main(["--quick", "--out", str(tmp_path)])
    assert result["accuracy"] > 0.7  # balanced-ish classes; the quick model is at ~0.85
    top2 = result["top2"]
    assert set(top2) == {"AttnLRP", "CP-LRP", "gradient x input", "gradient (L2)", "attention rollout", "random"}
    assert all(0.0 <= v <= 1.0 for v in top2.values())
    # random finds both marked tokens in ~3% of the sequences; a broken explanation is no better
    assert top2["AttnLRP"] > top2["random"] + 0.1 and top2["CP-LRP"] > top2["random"] + 0.1
    assert result["coverage_complete"]
    shares = result["runs"][0]["attnlrp_shares"]
    assert shares["tokens"] > 0.5 and abs(sum(shares.values()) - 1) < 1e-6
    assert (tmp_path / "results.json").exists() and "| seed 0 |" in (tmp_path / "table.md").read_text()
