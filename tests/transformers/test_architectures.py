"""Every supported Hugging Face architecture (tiny random configs), eager and sdpa: explained with AttnLRP and CP-LRP
without a CoverageWarning, the same relevance for both attention backends, per-layer conservation."""

from __future__ import annotations

import warnings

import pytest
import torch

import seqlrp
from seqlrp.transformers import CPLRP, AttnLRP

from ..core.helpers import untouched
from .tiny import ARCHITECTURES, NO_SDPA, Embeds, tiny

PRESETS = {"AttnLRP": AttnLRP, "CPLRP": CPLRP}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_no_coverage_warning_and_sdpa_equals_eager(name):
    """(ε small: causal models add their mask in eager mode, a constant summand whose ε share sdpa's ``is_causal`` does
    not have.)"""
    eager = tiny(name, "eager")
    x = torch.randn(2, 5, eager.get_input_embeddings().embedding_dim, dtype=torch.float64)
    results = {}
    for attention in ("eager",) if name in NO_SDPA else ("eager", "sdpa"):
        model = eager if attention == "eager" else tiny(name, attention)
        model.load_state_dict(eager.state_dict())
        for preset, cls in PRESETS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("error", seqlrp.CoverageWarning)
                with untouched(model):
                    result = seqlrp.explain(Embeds(model), x, target=1, composite=cls(epsilon=1e-12))
            assert not result.coverage.unruled
            assert torch.isfinite(result.relevance).all()
            assert model.config._attn_implementation == attention  # (sdpa decomposed in the explanation only)
            results[attention, preset] = result.relevance
    if name not in NO_SDPA:
        for preset in PRESETS:
            eager_r, sdpa_r = results["eager", preset], results["sdpa", preset]  # (the kernels round apart: ~1e-9)
            assert (eager_r - sdpa_r).abs().max() <= 1e-7 * eager_r.abs().max()
    assert not torch.allclose(results["eager", "AttnLRP"], results["eager", "CPLRP"], atol=1e-6)


@pytest.mark.parametrize("name", ["bert", "llama", "gpt2", "gemma"])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_per_layer_conservation_with_zero_biases(name, preset):
    """ε = 1e-14 and every bias (and LayerNorm β) zero: each rule's layer conserves relevance to 1e-9 of Σ|R|, but
    the softmax (its Taylor rule absorbs the implicit bias) and the sums with a constant (position embeddings,
    attention masks: biases)."""
    model = tiny(name)
    with torch.no_grad():
        for key, value in model.named_parameters():
            if key.endswith("bias"):
                value.zero_()
    x = torch.randn(2, 5, model.get_input_embeddings().embedding_dim, dtype=torch.float64)
    result = seqlrp.explain(Embeds(model), x, target=0, composite=PRESETS[preset](epsilon=1e-14), record="full")
    checked = 0
    for row in result.conservation():
        if row.name == "torch.softmax" or row.name.endswith("(bias)"):
            continue
        assert bool(((row.relevance_in - row.relevance_out).abs() <= 1e-9 * row.magnitude + 1e-300).all()), row.name
        checked += 1
    assert checked >= 10


def test_a_fused_attention_backend_is_refused_with_its_name():
    model = tiny("bert")
    model.config._attn_implementation = "flash_attention_2"  # (as if loaded so: the check reads the config)
    with pytest.raises(ValueError, match="'flash_attention_2' cannot be explained"):
        seqlrp.explain(Embeds(model), torch.randn(1, 3, 16, dtype=torch.float64), composite=AttnLRP())


@pytest.mark.parametrize("name", ["gemma", "gemma2", "gemma3"])
def test_gemma_rmsnorm_is_a_norm_with_weight_one_plus_w(name):
    """Gemma's RMSNorm (``x / rms(x) * (1 + w)``) is viewed as a normalization: the presets give it the identity rule,
    and its linearization with the scale held constant reproduces the layer (``J x = y``)."""
    from seqlrp.transformers.views import GemmaRMSNormView

    model = tiny(name)
    norm = model.model.layers[0].input_layernorm
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(2, 5, model.config.hidden_size, dtype=torch.float64)
    result = seqlrp.explain(Embeds(model), x, target=1, composite=AttnLRP())
    assert result.coverage.rules["model.model.layers.0.input_layernorm"].endswith(": identity()")
    view = GemmaRMSNormView(norm)
    torch.testing.assert_close(view.scale(x) * x, norm(x), rtol=1e-5, atol=1e-6)  # (Gemma normalizes in float32)
