"""xLSTM (mLSTM blocks) explained with the recurrent rules: v the signal, q, k, gates, normalizer as gates."""

from __future__ import annotations

import pytest
import torch

import seqlrp
from seqlrp.core.ops import Product

pytest.importorskip("transformers")

from .models import explain_strict, tiny_xlstm  # noqa: E402
from .reference import assert_matches_reference, xlstm_reference  # noqa: E402


def explain(model, x, target=None, composite=None):
    composite = composite or seqlrp.recurrent.RecurrentLRP(epsilon=1e-6, output_gate="half_product")
    return explain_strict(model, x, target, composite)


def test_relevance_equals_the_step_by_step_reference():
    model = tiny_xlstm()
    x = torch.randn(2, 6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 2])
    result = explain(model, x, target)
    reference, logits = xlstm_reference(model, x, target, 1e-6)
    assert_matches_reference(result, model, x, reference, logits)


def test_gate_rule_object_and_right_padding():
    composite = seqlrp.recurrent.RecurrentLRP()
    model = tiny_xlstm(pool="last_real")
    g = torch.Generator().manual_seed(4)
    short = torch.randn(1, 4, 8, dtype=torch.float64, generator=g)
    alone = explain(model, short, 0, composite)
    gates = [call.rule for call in alone.calls if call.name.endswith(".product")]
    assert gates and all(rule is composite[Product] for rule in gates)
    model.mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    padded = explain(model, torch.cat([short, torch.randn(1, 2, 8, dtype=torch.float64, generator=g)], 1), 0,
                     composite)
    torch.testing.assert_close(padded.relevance[0, :4], alone.relevance[0], rtol=1e-10, atol=1e-12)
    assert float(padded.relevance[0, 4:].abs().max()) == 0.0
