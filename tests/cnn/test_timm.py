"""timm CNNs: batch norms with their activation inside (``BatchNormAct2d`` and variants) are canonized.

Tiny configurations, random weights and batch-norm statistics, float64: the canonized model computes the
model's logits to 1e-9, no op is left without a rule (no CoverageWarning), every layer conserves under ε with
bias_factor = 1, and the user's model is unchanged.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import seqlrp
from benchmarks.models import Conserving
from seqlrp.cnn import CanonizationError, EpsilonGammaBox, EpsilonPlusFlat, canonize

from ..core.helpers import assert_unchanged, snapshot

timm = pytest.importorskip("timm")
from benchmarks.timm_models import build  # noqa: E402 - needs timm

BN = nn.modules.batchnorm._BatchNorm


def assert_explained(model: nn.Module, x: torch.Tensor) -> None:
    """Forward equivalence (1e-9), no batch norm left, no CoverageWarning, per-layer conservation (1e-6)."""
    before = snapshot(model)
    canonical = canonize(model, example_input=x, rtol=1e-9)
    assert not any(isinstance(m, BN) for m in canonical.modules())
    with torch.no_grad():
        reference, ours = model(x), canonical(x)
    assert float((ours - reference).abs().max()) <= 1e-9 * float(reference.abs().max())
    low, high = torch.full((1, 3, 1, 1), -4.0, dtype=x.dtype), torch.full((1, 3, 1, 1), 4.0, dtype=x.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        for composite in (EpsilonGammaBox(low, high), EpsilonPlusFlat()):
            result = seqlrp.explain(model, x, composite=composite)
            assert result.coverage.complete, result.coverage
            assert bool(torch.isfinite(result.relevance).all())
        conserved = seqlrp.explain(model, x, target=result.target, composite=Conserving(), record="full")
    worst = max(float((layer.delta.abs() / layer.magnitude.clamp_min(1e-300)).max())
                for layer in conserved.conservation())
    assert worst <= 1e-6
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", ["test_efficientnet", "mobilenetv3_small_050", "test_byobnet"])
def test_tiny_timm_models_with_batchnormact_are_canonized_and_explained(name):
    model, x = build(name, size=32)
    assert any(type(m) is timm.layers.BatchNormAct2d for m in model.modules())
    assert_explained(model, x)


def test_frozen_and_sync_variants_are_canonized():
    """``freeze_batch_norm_2d`` (FrozenBatchNormAct2d, torchvision's FrozenBatchNorm2d) and
    ``convert_sync_batchnorm`` (SyncBatchNormAct; eval mode) compute the same function: the same relevance."""
    model, x = build("test_efficientnet", size=32)
    reference = seqlrp.explain(model, x, composite=EpsilonPlusFlat())
    frozen = timm.layers.freeze_batch_norm_2d(build("test_efficientnet", size=32)[0])
    synced = timm.layers.convert_sync_batchnorm(build("test_efficientnet", size=32)[0]).eval()
    assert any(type(m) is timm.layers.FrozenBatchNormAct2d for m in frozen.modules())
    assert any(type(m) is timm.layers.SyncBatchNormAct for m in synced.modules())
    for variant in (frozen, synced):
        assert_explained(variant, x)
        result = seqlrp.explain(variant, x, composite=EpsilonPlusFlat())
        torch.testing.assert_close(result.relevance, reference.relevance, rtol=1e-9, atol=1e-12)


def test_plain_frozen_batchnorm_is_fused():
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    frozen = FrozenBatchNorm2d(4)
    with torch.no_grad():
        frozen.weight.uniform_(0.5, 1.5), frozen.bias.normal_(), frozen.running_mean.normal_()
        frozen.running_var.uniform_(0.5, 1.5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), frozen, nn.ReLU(), nn.Flatten(), nn.LazyLinear(2)).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    model(x)
    assert_explained(model.eval(), x)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in canonize(model, example_input=x).modules())


def test_a_hook_on_a_batchnormact_is_refused_naming_it():
    model, x = build("test_efficientnet", size=32)
    name, bn = next((n, m) for n, m in model.named_modules() if type(m) is timm.layers.BatchNormAct2d)
    handle = bn.register_forward_hook(lambda module, inputs, output: None)
    before = snapshot(model)
    try:
        with pytest.raises(CanonizationError, match=name.replace(".", r"\.")):
            canonize(model, example_input=x)
        assert_unchanged(model, before)
    finally:
        handle.remove()


def test_per_pixel_zbox_bounds_print_short():
    """Bounds given per pixel (150,528 numbers on a 224² image): the coverage shows their count and range."""
    model, x = build("test_efficientnet", size=32)
    low, high = torch.full_like(x, -2.0), torch.linspace(1, 3, x.numel(), dtype=x.dtype).view_as(x)
    result = seqlrp.explain(model, x, composite=EpsilonGammaBox(low, high))
    text = repr(result.coverage)
    assert "low=(3072 values in [-2, -2])" in text and "high=(3072 values in [1, 3])" in text
    assert len(text) < 20_000


def _blocks_model():
    """One of each timm block that computes something other than its torch base class."""
    from timm.layers import BatchNormAct2d, GroupNormAct, LayerNorm2d, ScaledStdConv2d, StdConv2dSame, create_conv2d
    from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame

    torch.manual_seed(0)
    model = nn.Sequential(
        create_conv2d(3, 8, 3, stride=2, padding="same"), BatchNormAct2d(8, act_layer=nn.SiLU),
        StdConv2dSame(8, 8, 3, stride=2), GroupNormAct(8, 2, act_layer=nn.ReLU),
        MaxPool2dSame(3, stride=2), ScaledStdConv2d(8, 8, 3, padding=1), LayerNorm2d(8),
        AvgPool2dSame(2, stride=2), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(2, 3, 37, 35, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model(x.float())
    from benchmarks.timm_models import randomize

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
                module.weight.normal_(1, 0.2), module.bias.normal_(0, 0.2)
            if hasattr(module, "gain"):
                module.gain.uniform_(0.5, 1.5)
    return randomize(model).double().eval(), x


def test_timm_blocks_that_change_their_base_class_forward_are_rebuilt():
    """SAME padding (odd sizes: asymmetric pads), weight standardization, SAME pools, LayerNorm2d, GroupNormAct."""
    from timm.layers import Conv2dSame

    model, x = _blocks_model()
    assert type(model[0]) is Conv2dSame
    canonical = canonize(model, example_input=x, rtol=1e-12)
    assert not any(type(m).__module__.startswith("timm.") for m in canonical.modules())
    assert_explained(model, x)


def test_nearest_upsampling_routes_relevance():
    """HRNet's fuse layers upsample by nearest neighbour: a copy, routed like one. LRP-0 with pass on ReLUs
    equals gradient x input (an independent reference), and no op is left without a rule."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
                          nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3, bias=False)).double().eval()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    zero = seqlrp.Composite({seqlrp.groups.WEIGHTED: "zero", seqlrp.groups.AVG_POOLS: "zero",
                             seqlrp.groups.ACTIVATIONS: "pass"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        result = seqlrp.explain(model, x.detach(), target=torch.tensor([0, 2]), composite=zero)
    assert result.coverage.complete
    out = model(x)
    (grad,) = torch.autograd.grad(out[torch.arange(2), torch.tensor([0, 2])].sum(), x)
    torch.testing.assert_close(result.relevance, (x * grad).detach(), rtol=1e-9, atol=1e-12)
