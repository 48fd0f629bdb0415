"""Mamba (Hugging Face MambaModel, slow path) explained with MambaLRP's rules."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

import seqlrp
from seqlrp.core.ops import Product
from seqlrp.core.session import NoRuleError, Session
from seqlrp.lstm.recurrent import cell_rules

pytest.importorskip("transformers")

from .models import explain_strict, tiny_mamba  # noqa: E402
from .reference import assert_matches_reference, mamba_reference  # noqa: E402


def explain(model, x, target=None, **options):
    return explain_strict(model, x, target, seqlrp.recurrent.MambaLRP(**options))


@pytest.mark.parametrize("output_gate", ["half_product", "signal_takes_all"])
def test_relevance_equals_the_step_by_step_reference(output_gate):
    model = tiny_mamba()
    x = torch.randn(3, 6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 2, 1])
    result = explain(model, x, target, epsilon=1e-6, output_gate=output_gate)
    reference, logits = mamba_reference(model, x, target, 1e-6, output_gate)
    assert_matches_reference(result, model, x, reference, logits)


def test_conservation_per_layer_and_in_total():
    model = tiny_mamba(conv_bias=False, head_bias=False)
    x = torch.randn(2, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    result = explain(model, x, epsilon=1e-12)
    rows = result.conservation()
    assert len(rows) > 20
    for row in rows:
        torch.testing.assert_close(row.relevance_in, row.relevance_out, rtol=1e-7, atol=1e-9)
    logit = result.output.gather(1, result.target[:, None])[:, 0]
    torch.testing.assert_close(result.relevance.sum((1, 2)), logit, rtol=1e-7, atol=1e-9)


def test_gate_rule_is_the_lstm_s_object():
    composite = seqlrp.recurrent.MambaLRP()
    model = tiny_mamba()
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    result = seqlrp.explain(model, x, composite=composite)
    gates = [call.rule for call in result.calls if call.name.endswith(".product")]
    assert gates and all(rule is composite[Product] for rule in gates)
    assert cell_rules(Session(composite), torch.nn.LSTM(2, 2)).product is composite[Product]


def test_left_padding_and_batch_invariance():
    model = tiny_mamba()
    g = torch.Generator().manual_seed(3)
    short, long = torch.randn(1, 4, 8, dtype=torch.float64, generator=g), torch.randn(1, 7, 8, dtype=torch.float64,
                                                                                      generator=g)
    alone = explain(model, short, 1)
    padded = torch.cat([torch.cat([torch.randn(1, 3, 8, dtype=torch.float64, generator=g), short], 1), long])
    model.mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7])
    batch = explain(model, padded, 1)
    torch.testing.assert_close(batch.relevance[0, 3:], alone.relevance[0], rtol=1e-10, atol=1e-12)
    assert float(batch.relevance[0, :3].abs().max()) == 0.0  # padding gets nothing
    model.mask = None
    long_alone = explain(model, long, 1)
    torch.testing.assert_close(batch.relevance[1], long_alone.relevance[0], rtol=1e-10, atol=1e-12)


def test_right_padding_reads_the_last_real_token():
    model = tiny_mamba(pool="last_real")
    g = torch.Generator().manual_seed(4)
    short = torch.randn(1, 4, 8, dtype=torch.float64, generator=g)
    alone = explain(model, short, 0)
    model.mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    padded = explain(model, torch.cat([short, torch.randn(1, 2, 8, dtype=torch.float64, generator=g)], 1), 0)
    torch.testing.assert_close(padded.relevance[0, :4], alone.relevance[0], rtol=1e-10, atol=1e-12)
    assert float(padded.relevance[0, 4:].abs().max()) == 0.0


def test_the_user_model_is_untouched():
    model = tiny_mamba()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    explain(model, torch.randn(2, 4, 8, dtype=torch.float64))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all("forward" not in module.__dict__ for module in model.modules())
    assert all(not module._forward_hooks and not module._forward_pre_hooks for module in model.modules())


def test_a_cache_with_past_tokens_is_refused():
    from seqlrp.recurrent.mamba import refuse_cache

    class Past:
        def get_seq_length(self, layer):
            return 3

    with pytest.raises(NoRuleError, match="use_cache=False"):
        refuse_cache("mixer", Past(), 0)
    refuse_cache("mixer", None, 0)


def test_import_without_transformers():
    code = ("import sys; sys.modules['transformers'] = None; import seqlrp; "
            "c = seqlrp.recurrent.MambaLRP(epsilon=0.1); print(type(c).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "MambaLRP"


def test_the_docs_example_runs():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "recurrent.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        exec(compile(block, "docs/recurrent.md", "exec"), scope)  # noqa: S102
    assert scope["result"].relevance.shape == (1, 5, 16)
