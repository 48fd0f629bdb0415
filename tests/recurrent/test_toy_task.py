"""--quick run of the recurrent families' toy task: every family trains, is explained, and the table is written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


def test_toy_task_recurrent_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("toy_task_recurrent", ROOT / "nlp_examples" / "toy_task_recurrent.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_task_recurrent"] = module
    spec.loader.exec_module(module)
    results = module.main(["--quick", "--out", str(tmp_path)])
    assert set(results) == {"lstm", "mamba", "mamba2", "recurrent_gemma", "rwkv", "xlstm"}
    for family, result in results.items():
        assert 0.0 <= result["accuracy"] <= 1.0
        methods = set(result["top2"])
        assert {"gradient x input", "gradient", "random"} <= methods
        assert any(name.startswith("LRP") for name in methods), family
        assert all(0.0 <= v <= 1.0 for v in result["top2"].values())
    assert set(results["mamba"]["top2"]) >= {"LRP (half rule)", "LRP (signal-takes-all)"}
    table = (tmp_path / "table.md").read_text()
    assert all(f"| {family} |" in table for family in results)


def test_mean_pooling_head():
    """``pooling="mean"`` (sst2_recurrent's head): the masked mean of the real tokens' states, explained with no
    CoverageWarning, no relevance on padding, and the padding does not change the logits (causal backbone)."""
    import torch

    import seqlrp
    from tests.recurrent.models import explain_strict

    spec = importlib.util.spec_from_file_location("toy_task_recurrent", ROOT / "nlp_examples" / "toy_task_recurrent.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_task_recurrent"] = module
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.TokenClassifier("xlstm", 30, hidden=16, pooling="mean").eval().double()
    ids = torch.randint(2, 30, (3, 7))
    lengths = torch.tensor([7, 4, 2])
    ids[1, 4:], ids[2, 2:] = 0, 0
    logits = model(ids, lengths)
    for i in range(3):  # the same sequence without its padding
        alone = model(ids[i:i + 1, :int(lengths[i])], lengths[i:i + 1])
        assert torch.allclose(alone, logits[i:i + 1], atol=1e-10)
    model.body.lengths = lengths
    embeds = model.embedding(ids).detach()
    relevance = explain_strict(model.body, embeds, torch.tensor([0, 1, 0]),
                               seqlrp.recurrent.RecurrentLRP(epsilon=1e-9)).relevance.sum(-1)
    assert relevance[1, 4:].abs().max() == 0 and relevance[2, 2:].abs().max() == 0
    assert relevance[:, :2].abs().sum() > 0
    with pytest.raises(ValueError, match="pooling"):
        module.EmbeddingHead(torch.nn.Identity(), 16, pooling="max")
