"""Oracle: zennit 1.0's composites and canonizers vs ours on the same weights (float64, 1e-6 relative).

Definitional differences, none of which shows on these inputs: zennit's Gamma gives 0 to outputs
with z == 0 exactly (we count them as positive); zennit keeps a merged batch norm as an identity
module with the Pass rule, we remove it.
"""

from __future__ import annotations

import copy

import pytest
import torch

import seqlrp
from seqlrp.cnn import EpsilonGammaBox, EpsilonPlusFlat

from .helpers import torchvision_model

zennit_composites = pytest.importorskip("zennit.composites", reason="zennit (test-only oracle) is not installed")
zennit_torchvision = pytest.importorskip("zennit.torchvision")
from zennit.attribution import Gradient  # noqa: E402

X = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4 - 2


def zennit_relevance(model, composite, target):
    model = copy.deepcopy(model)
    with Gradient(model=model, composite=composite) as attributor:
        output, relevance = attributor(X.clone(), lambda out: torch.nn.functional.one_hot(target, out.shape[1]).to(out))
    return output, relevance


CASES = [
    ("vgg16", zennit_torchvision.VGGCanonizer),
    ("resnet18", zennit_torchvision.ResNetCanonizer),
]


@pytest.mark.parametrize("name,canonizer", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("preset", ["EpsilonPlusFlat", "EpsilonGammaBox"])
def test_same_relevance_as_zennit(name, canonizer, preset):
    model = torchvision_model(name)
    target = torch.tensor([3, 7])
    if preset == "EpsilonPlusFlat":
        ours = EpsilonPlusFlat()
        theirs = zennit_composites.EpsilonPlusFlat(canonizers=[canonizer()])
    else:
        low, high = torch.full_like(X, -2.0), torch.full_like(X, 2.0)
        ours = EpsilonGammaBox(-2.0, 2.0, gamma=0.25)
        theirs = zennit_composites.EpsilonGammaBox(low=low, high=high, gamma=0.25, canonizers=[canonizer()])
    result = seqlrp.explain(model, X, target=target, composite=ours, seed="one")
    output, relevance = zennit_relevance(model, theirs, target)
    torch.testing.assert_close(result.output, output, rtol=1e-9, atol=1e-9)
    scale = relevance.abs().max()
    assert (result.relevance - relevance).abs().max() <= 1e-6 * scale


def _mobilenet_v2_canonizers():
    """zennit canonizers that give mobilenet_v2 the rules seqlrp applies: BNs merged in (Sequential subclass)
    Conv2dNormActivation, each residual add an explicit zennit Sum (ε), the functional head pooling a module."""
    from torchvision.models.mobilenetv2 import InvertedResidual, MobileNetV2
    from zennit.canonizers import AttributeCanonizer, SequentialMergeBatchNorm
    from zennit.layer import Sum

    def residual_forward(self, x):
        if not self.use_res_connect:
            return self.conv(x)
        return self.canonizer_sum(torch.stack([x, self.conv(x)], dim=-1))

    def head_forward(self, x):
        return self.classifier(torch.flatten(self.canonizer_pool(self.features(x)), 1))

    def attributes(name, module):
        if isinstance(module, InvertedResidual):
            return {"forward": residual_forward.__get__(module), "canonizer_sum": Sum()}
        if isinstance(module, MobileNetV2):
            return {"forward": head_forward.__get__(module), "canonizer_pool": torch.nn.AdaptiveAvgPool2d(1)}
        return None

    return [SequentialMergeBatchNorm(), AttributeCanonizer(attributes)]


@pytest.mark.parametrize("preset", ["EpsilonPlusFlat", "EpsilonGammaBox"])
def test_mobilenet_v2_through_graph_canonization_agrees_with_zennit(preset):
    model = torchvision_model("mobilenet_v2", num_classes=10, width_mult=0.5)
    target = torch.tensor([3, 7])
    if preset == "EpsilonPlusFlat":
        ours, theirs = EpsilonPlusFlat(), zennit_composites.EpsilonPlusFlat(canonizers=_mobilenet_v2_canonizers())
    else:
        ours = EpsilonGammaBox(-2.0, 2.0, gamma=0.25)
        theirs = zennit_composites.EpsilonGammaBox(low=torch.full_like(X, -2.0), high=torch.full_like(X, 2.0),
                                                   gamma=0.25, canonizers=_mobilenet_v2_canonizers())
    result = seqlrp.explain(model, X, target=target, composite=ours, seed="one")
    output, relevance = zennit_relevance(model, theirs, target)
    torch.testing.assert_close(result.output, output, rtol=1e-9, atol=1e-9)
    assert result.coverage.complete and result.coverage.rules["torch.add"].startswith("torch.add: epsilon")
    assert (result.relevance - relevance).abs().max() <= 1e-6 * relevance.abs().max()
