"""RWKV (v4) explained with the recurrent rules: WKV weights as gates, ε over the values."""

from __future__ import annotations

import warnings

import pytest
import torch

import seqlrp
from seqlrp.core.ops import Product
from seqlrp.core.session import NoRuleError

pytest.importorskip("transformers")

from .models import explain_strict, tiny_rwkv  # noqa: E402
from .reference import assert_matches_reference, rwkv_reference  # noqa: E402


def explain(model, x, target=None, **options):
    return explain_strict(model, x, target, seqlrp.recurrent.RecurrentLRP(**options))


def test_relevance_equals_the_step_by_step_reference():
    model = tiny_rwkv()
    x = torch.randn(3, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 2, 1])
    result = explain(model, x, target, epsilon=1e-6)
    reference, logits = rwkv_reference(model, x, target, 1e-6)
    assert_matches_reference(result, model, x, reference, logits)


def test_gate_rule_object_and_right_padding():
    composite = seqlrp.recurrent.RecurrentLRP()
    model = tiny_rwkv(pool="last_real")
    g = torch.Generator().manual_seed(4)
    short = torch.randn(1, 4, 8, dtype=torch.float64, generator=g)
    alone = seqlrp.explain(model, short, 0, composite=composite)
    gates = [call.rule for call in alone.calls if call.name.endswith(".product")]
    assert gates and all(rule is composite[Product] for rule in gates)
    model.mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (transformers: "attention_mask ... unused in this model")
        padded = seqlrp.explain(model, torch.cat([short, torch.randn(1, 2, 8, dtype=torch.float64, generator=g)], 1),
                                0, composite=composite)
    torch.testing.assert_close(padded.relevance[0, :4], alone.relevance[0], rtol=1e-10, atol=1e-12)
    assert float(padded.relevance[0, 4:].abs().max()) == 0.0


def test_a_recurrent_state_is_refused():
    model = tiny_rwkv()
    model.backbone.config.use_cache = True

    class Cached(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, e):
            return self.inner.head(self.inner.backbone(inputs_embeds=e, use_cache=True).last_hidden_state[:, -1])

    with pytest.raises(NoRuleError, match="use_cache=False"):
        seqlrp.explain(Cached(model), torch.randn(1, 3, 8, dtype=torch.float64),
                       composite=seqlrp.recurrent.RecurrentLRP())
