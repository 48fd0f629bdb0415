"""Per-layer conservation on every family: with the biases of the affine maps and norms set to 0 (only gates keep
theirs) and a tiny ε, every op's input relevance equals its output relevance, and the tokens' total the logit.
The user's model stays untouched (the half rule's conservation: test_mamba.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seqlrp

pytest.importorskip("transformers")

from .models import explain_strict, tiny_mamba, tiny_mamba2, tiny_recurrent_gemma, tiny_rwkv, tiny_xlstm  # noqa: E402

BUILDERS = {"mamba": tiny_mamba, "mamba2": tiny_mamba2, "recurrent_gemma": tiny_recurrent_gemma, "rwkv": tiny_rwkv,
            "xlstm": tiny_xlstm}


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_every_op_conserves_and_the_model_is_untouched(family):
    model = BUILDERS[family]()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.LayerNorm)) and module.bias is not None:
                module.bias.zero_()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    result = explain_strict(model, x, composite=seqlrp.recurrent.RecurrentLRP(epsilon=1e-12))
    rows = result.conservation()
    assert len(rows) > 10
    for row in rows:
        torch.testing.assert_close(row.relevance_in, row.relevance_out, rtol=1e-7, atol=1e-10, msg=row.name)
    logit = result.output.gather(1, result.target[:, None])[:, 0]
    torch.testing.assert_close(result.relevance.sum((1, 2)), logit, rtol=1e-7, atol=1e-10)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all("forward" not in module.__dict__ for module in model.modules())
