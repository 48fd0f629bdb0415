"""RecurrentGemma (RG-LRU) explained with the recurrent rules."""

from __future__ import annotations

import pytest
import torch

import seqlrp
from seqlrp.core.ops import Product
from seqlrp.core.session import NoRuleError

pytest.importorskip("transformers")

from .models import EmbeddingClassifier, explain_strict, tiny_recurrent_gemma  # noqa: E402
from .reference import assert_matches_reference, recurrent_gemma_reference  # noqa: E402


def explain(model, x, target=None, **options):
    return explain_strict(model, x, target, seqlrp.recurrent.RecurrentLRP(**options))


@pytest.mark.parametrize("output_gate", ["signal_takes_all", "half_product"])
def test_relevance_equals_the_step_by_step_reference_and_conserves(output_gate):
    model = tiny_recurrent_gemma()
    x = torch.randn(3, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 2, 1])
    result = explain(model, x, target, epsilon=1e-6, output_gate=output_gate)
    reference, logits = recurrent_gemma_reference(model, x, target, 1e-6, output_gate)
    assert_matches_reference(result, model, x, reference, logits)
    for row in result.conservation():  # (biases absorb their share: in <= out up to them, never NaN)
        assert bool(torch.isfinite(row.relevance_in).all())


def test_the_gate_rule_object_is_shared():
    composite = seqlrp.recurrent.RecurrentLRP()
    result = seqlrp.explain(tiny_recurrent_gemma(), torch.randn(1, 3, 8, dtype=torch.float64), composite=composite)
    gates = [call.rule for call in result.calls if call.name.endswith(".product")]
    assert gates and all(rule is composite[Product] for rule in gates)


def test_right_padding_reads_the_last_real_token():
    model = tiny_recurrent_gemma(pool="last_real")
    g = torch.Generator().manual_seed(4)
    short = torch.randn(1, 4, 8, dtype=torch.float64, generator=g)
    alone = explain(model, short, 0)
    model.mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    padded = explain(model, torch.cat([short, torch.randn(1, 2, 8, dtype=torch.float64, generator=g)], 1), 0)
    torch.testing.assert_close(padded.relevance[0, :4], alone.relevance[0], rtol=1e-10, atol=1e-12)
    assert float(padded.relevance[0, 4:].abs().max()) == 0.0


def test_attention_blocks_are_refused_with_a_reason():
    from transformers import RecurrentGemmaConfig, RecurrentGemmaModel

    config = RecurrentGemmaConfig(num_hidden_layers=1, vocab_size=16, hidden_size=8, intermediate_size=16,
                                  num_attention_heads=2, lru_width=8, attention_window_size=16, conv1d_width=3,
                                  block_types=["attention"], use_cache=False)
    model = EmbeddingClassifier(RecurrentGemmaModel(config), 8).eval()
    with pytest.raises(NoRuleError, match="attention blocks need the transformer rules"):
        seqlrp.explain(model, torch.randn(1, 3, 8), composite=seqlrp.recurrent.RecurrentLRP())
