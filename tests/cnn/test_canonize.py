"""canonize(): forward equivalence on every torchvision architecture, ThreshReLU and tensor-biased conv."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.cnn import CanonizationError, TensorBiasedConv2d, ThreshReLU, canonize

from ..core.helpers import assert_unchanged, snapshot
from .helpers import randomize_batchnorm, torchvision_model

ARCHITECTURES = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
    "wide_resnet50_2", "densenet121", "densenet161", "densenet169", "densenet201",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_forward_equivalence_float64(name):
    model = torchvision_model(name, zero_gamma_every=7 if "dense" in name else 0)
    before = snapshot(model)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    canonical = canonize(model, example_input=x)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in canonical.modules())
    with torch.no_grad():
        diff = (canonical(x) - model(x)).abs().max().item()
    assert diff <= 1e-9, diff
    assert_unchanged(model, before)
    if name.startswith("resnet") or name.startswith("resnext") or name.startswith("wide"):
        coverage = seqlrp.explain(canonical, x, composite=seqlrp.cnn.EpsilonPlusFlat()).coverage
        assert coverage.complete and coverage.rules["torch.add"].startswith("torch.add: epsilon")  # residual sums
    if name.startswith("densenet"):
        assert any(isinstance(m, ThreshReLU) for m in canonical.modules())
        assert any(isinstance(m, TensorBiasedConv2d) for m in canonical.modules())


@pytest.mark.parametrize("gamma_sign", [1.0, -1.0, 0.0])
def test_threshrelu_identity(gamma_sign):
    torch.manual_seed(2)
    bn = nn.BatchNorm2d(4).double().eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.copy_(gamma_sign * (torch.rand(4, dtype=torch.float64) + 0.2))
        bn.bias.normal_()
    from seqlrp.cnn.canonize import _threshold

    thresh, scale, shift = _threshold(bn)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64) * 3
    expected = torch.relu(bn(x))
    got = scale.view(1, -1, 1, 1) * thresh(x) + shift.view(1, -1, 1, 1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    if gamma_sign != 0:  # the theorem literally: ReLU(BN(x)) == BN(ThreshReLU(x))
        torch.testing.assert_close(bn(thresh(x)), expected, rtol=1e-12, atol=1e-12)
    # active_pass keeps relevance exactly where the BN output is positive (the ReLU's active set)
    relevance = torch.randn_like(x)
    torch.testing.assert_close(thresh.pass_active(relevance, x), relevance * (bn(x) > 0), rtol=0, atol=0)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("kernel", [1, 3])
def test_tensor_biased_conv_equals_bn_then_conv(stride, padding, kernel):
    torch.manual_seed(3)
    bn = randomize_batchnorm(nn.BatchNorm2d(3), seed=4).double().eval()
    conv = nn.Conv2d(3, 5, kernel, stride=stride, padding=padding).double()
    from seqlrp.cnn.canonize import _bn_affine

    scale, shift = _bn_affine(bn)
    fused = TensorBiasedConv2d(conv, scale, shift)
    for size in (7, 9):  # the bias map is per input size (cached)
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        torch.testing.assert_close(fused(x), conv(bn(x)), rtol=1e-12, atol=1e-12)
    assert len(fused._maps) == 2
    if padding and kernel == 3:  # the map really varies at the borders
        bias_map = fused.bias_map(x)
        assert not torch.allclose(bias_map[:, 0, 0], bias_map[:, 1, 1])


def test_grouped_tensor_biased_conv():
    torch.manual_seed(5)
    bn = randomize_batchnorm(nn.BatchNorm2d(4), seed=6).double().eval()
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2).double()
    from seqlrp.cnn.canonize import _bn_affine

    fused = TensorBiasedConv2d(conv, *_bn_affine(bn))
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(fused(x), conv(bn(x)), rtol=1e-12, atol=1e-12)


def test_generic_fusion_and_batchnorms_that_fit_no_pattern():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 5), nn.BatchNorm1d(5))
    model = randomize_batchnorm(model).eval()
    canonical = canonize(model, example_input=torch.randn(2, 3, 8, 8))
    kinds = [type(m).__name__ for name, m in canonical.named_modules() if name]
    assert kinds == ["Conv2d", "ReLU", "Flatten", "Linear"]
    # a batch norm before a conv is fused into it (a tensor-biased conv); one before a pooling stays an
    # explicit per-channel affine layer with its rule
    forward = randomize_batchnorm(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 2, 3, padding=1))).double().eval()
    alone = randomize_batchnorm(nn.Sequential(nn.BatchNorm2d(3), nn.MaxPool2d(2), nn.Flatten(),
                                              nn.Linear(12, 2))).double().eval()
    for model, kind in ((forward, TensorBiasedConv2d), (alone, seqlrp.cnn.ChannelAffine)):
        before = snapshot(model)
        x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
        canonical = canonize(model, example_input=x)
        assert any(isinstance(m, kind) for m in canonical.modules())
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in canonical.modules())
        assert_unchanged(model, before)


def test_train_mode_refused():
    with pytest.raises(CanonizationError, match="training mode"):
        canonize(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)))


def test_verification_names_the_first_differing_module():
    from seqlrp.cnn.canonize import _verify

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    wrong = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    wrong[2].load_state_dict(model[2].state_dict())
    with pytest.raises(CanonizationError, match="first differing module: '0'"):
        _verify(model, wrong, torch.randn(2, 4), 1e-6)


def test_the_affines_computed_together_are_bitwise_those_of_each_batch_norm(monkeypatch):
    """``batchnorm.affines`` (one foreach op per step, used during canonization) gives exactly ``bn_affine``'s
    numbers, for mixed sizes, eps and dtypes; a batch norm whose tensors it did not see is computed afresh; and a
    canonized model is bitwise the same with and without it."""
    batchnorm = sys.modules["seqlrp.cnn.batchnorm"]
    norms = [randomize_batchnorm(nn.BatchNorm2d(c, eps=eps), seed=c).eval() for c, eps in ((3, 1e-5), (8, 1e-3))]
    norms.append(randomize_batchnorm(nn.BatchNorm1d(5), seed=9).double().eval())
    norms.append(nn.BatchNorm2d(4, affine=False).eval())  # (no weight: left to bn_affine)
    known = batchnorm.affines(norms)
    assert len(known) == 3
    for bn in norms[:3]:
        sources, scale, shift = known[id(bn.running_var)]
        expected = batchnorm.bn_affine(bn)
        assert torch.equal(scale, expected[0]) and torch.equal(shift, expected[1])
    token = batchnorm.AFFINES.set(known)
    try:
        other = randomize_batchnorm(nn.BatchNorm2d(3), seed=11).eval()
        other.running_var = norms[0].running_var  # (a shared variance, other weights: not the cached affine)
        assert not torch.equal(batchnorm.bn_affine(other)[0], known[id(other.running_var)][1])
    finally:
        batchnorm.AFFINES.reset(token)
    model = torchvision_model("mobilenet_v3_small")
    with_them = canonize(model, verify=False)
    monkeypatch.setattr(sys.modules["seqlrp.cnn.canonize"], "affines", lambda norms: {})
    without = canonize(model, verify=False)
    pairs = list(zip(with_them.state_dict().values(), without.state_dict().values(), strict=True))
    assert pairs and all(torch.equal(a, b) for a, b in pairs)
