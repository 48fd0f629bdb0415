"""--quick runs of the three examples: outputs exist and are sane (finite, shapes, accuracy above chance)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "nlp_examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_toy_task_quick(tmp_path):
    results = load("toy_task").main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "report.html").exists()
    assert set(results) == {"LSTM", "BiLSTM", "attention BiLSTM", "Kim CNN"}
    for name in results:
        assert results[name]["accuracy"] > 0.8
        top2 = results[name]["top2"]
        assert set(top2) == {"LRP ε=0.001 bf=0", "LRP ε=0.001 bf=1", "gradient", "gradient x input", "random"}
        assert all(0.0 <= v <= 1.0 for v in top2.values())
        assert top2["LRP ε=0.001 bf=0"] > top2["random"]


def test_digits_cnn_quick(tmp_path):
    rows = load("digits_cnn").main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "report.html").exists()
    assert {r["explainer"] for r in rows} >= {"LRP EpsilonGammaBox", "gradient", "random"}
    assert all(math.isfinite(r["aopc"]) and r["n"] == 64 for r in rows)
    gap = {r["explainer"]: r["aopc"] for r in rows if r["order"] == "morf-lerf gap"}
    assert gap["LRP EpsilonGammaBox"] > gap["random"]


@pytest.mark.skipif(not (SST2 / "train.tsv").exists(), reason=f"SST-2 data not found at {SST2}")
def test_sst2_bilstm_quick(tmp_path):
    result = load("sst2_bilstm").main(["--quick", "--data", str(SST2), "--out", str(tmp_path)])
    assert result["accuracy"] > 0.55  # above chance (two balanced classes) after a quick run
    for name in ("report.html", "model.pt", "vocab.txt"):
        assert (tmp_path / name).exists()
    assert all(math.isfinite(r["aopc"]) and r["n"] == 100 for r in result["rows"])
