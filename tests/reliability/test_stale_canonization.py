"""Never a stale explanation: after any change to the model, explain describes the model as it is now.

Each edit is made after a first explanation (so any cache would be warm); the explanation must then
equal that of a fresh deep copy (1e-12, float64) and its output the model's own output, and differ from
the explanation before the edit.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn
from torchvision.models.densenet import DenseNet
from torchvision.models.resnet import BasicBlock

import seqlrp
from seqlrp.cnn import CanonizationError, EpsilonGammaBox, EpsilonPlusFlat

from ..cnn.helpers import randomize_batchnorm, torchvision_model
from ..core.helpers import untouched
from .models import cnn

X = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def _resnet():
    return torchvision_model("resnet18", num_classes=5)


def _densenet():
    torch.manual_seed(0)
    model = DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=3)
    return randomize_batchnorm(model).eval().double()


def _block():
    torch.manual_seed(5)
    return randomize_batchnorm(BasicBlock(512, 512), seed=5).double().eval()


def _no_grad(fn):
    def edit(model):
        with torch.no_grad():
            fn(model)

    return edit


EDITS = {
    "weight.data.mul_": (_resnet, lambda m: m.conv1.weight.data.mul_(3)),
    "weight.data = t": (_resnet, lambda m: setattr(m.layer1[0].conv1.weight, "data",
                                                   torch.randn_like(m.layer1[0].conv1.weight))),
    "bn.eps": (_resnet, lambda m: setattr(m.bn1, "eps", 0.5)),
    "swap maxpool for avgpool": (_resnet, lambda m: setattr(m, "maxpool", nn.AvgPool2d(3, 2, 1))),
    "stem ReLU -> Tanh": (_resnet, lambda m: setattr(m, "relu", nn.Tanh())),
    "block ReLU -> LeakyReLU": (_resnet, lambda m: setattr(m.layer2[0], "relu", nn.LeakyReLU(0.2))),
    "buffer.data.add_": (_resnet, lambda m: m.layer1[1].bn2.running_mean.data.add_(1.0)),
    "buffer in place (no_grad)": (_resnet, _no_grad(lambda m: m.bn1.running_var.mul_(4))),
    "load_state_dict": (_resnet, lambda m: m.load_state_dict(torchvision_model("resnet18", seed=7,
                                                                                num_classes=5).state_dict())),
    "new head": (_resnet, lambda m: setattr(m, "fc", nn.Linear(512, 5).double())),
    "bn.weight = 0 on channels": (_resnet, _no_grad(lambda m: m.layer3[0].bn1.weight[:64].zero_())),
    "conv padding_mode reflect": (_resnet, lambda m: setattr(m.conv1, "padding_mode", "reflect")),
    "avgpool -> pool + clip": (_resnet, lambda m: setattr(m, "avgpool", nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                                                                    nn.Hardtanh(-0.1, 0.1)))),
    "replace a block": (_resnet, lambda m: m.layer4.__setitem__(1, _block())),
    "bn.bias.data.fill_": (_resnet, lambda m: m.bn1.bias.data.fill_(0.5)),
    "downsample weight.data.neg_": (_resnet, lambda m: m.layer2[0].downsample[0].weight.data.neg_()),
    "densenet norm5.eps": (_densenet, lambda m: setattr(m.features.norm5, "eps", 0.3)),
    "densenet norm1 buffer.data": (_densenet,
                                   lambda m: m.features.denseblock1.denselayer1.norm1.running_mean.data.add_(0.5)),
    "densenet classifier.data": (_densenet, lambda m: m.classifier.weight.data.mul_(-2)),
    "sequential bn buffer.data": (cnn, lambda m: m.features[1].running_var.data.mul_(3)),
    "sequential ReLU -> Tanh": (cnn, lambda m: m.features.__setitem__(2, nn.Tanh())),
}


@pytest.mark.parametrize("composite", [EpsilonPlusFlat, lambda: EpsilonGammaBox(-3.0, 3.0)],
                         ids=["EpsilonPlusFlat", "EpsilonGammaBox"])
@pytest.mark.parametrize("edit", list(EDITS))
def test_explanation_follows_every_edit(edit, composite):
    build, change = EDITS[edit]
    model = build()
    x = X[:, :, :8, :8] if build is cnn else X
    before = seqlrp.explain(model, x, target=1, composite=composite())
    change(model)
    with torch.no_grad():
        now = model(x)
    assert not torch.allclose(now, before.output, rtol=1e-9, atol=1e-9), "the edit did not change model(x)"
    result = seqlrp.explain(model, x, target=1, composite=composite())
    fresh = seqlrp.explain(copy.deepcopy(model), x, target=1, composite=composite())
    torch.testing.assert_close(result.relevance, fresh.relevance, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.output, now, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(result.relevance, before.relevance, rtol=1e-6, atol=1e-9)


class _Doubled(nn.Conv2d):  # a subclass with another forward: it must not be fused as a plain conv
    def forward(self, x):
        return 2 * super().forward(x)


def _patched_resnet():
    model = _resnet()
    model.layer1[0].forward = lambda x: x  # the block now is the identity: its class's forward no longer holds
    return model


def _subclassed_sequential():
    torch.manual_seed(0)
    seq = nn.Sequential(_Doubled(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 2))
    return randomize_batchnorm(seq).double().eval()


def _densenet_edited(edit):
    model = _densenet()
    edit(model)
    return model


FOLLOWED = {  # changes that break a class-name canonizer; the graph sees what the model really computes
    "densenet ReLU -> ELU": lambda m: setattr(m.features.denseblock1.denselayer1, "relu1", nn.ELU()),
    "densenet transition ReLU -> Tanh": lambda m: setattr(m.features.transition1, "relu", nn.Tanh()),
    "densenet classifier -> Sequential": lambda m: setattr(m, "classifier", nn.Sequential(nn.Linear(16, 3)).double()),
}


@pytest.mark.parametrize("build", [functools.partial(_densenet_edited, edit) for edit in FOLLOWED.values()]
                         + [_patched_resnet, _subclassed_sequential],
                         ids=[*FOLLOWED, "patched block forward", "Conv2d subclass before a BN"])
def test_the_graph_follows_what_the_model_computes(build):
    model = build()
    with untouched(model):
        result = seqlrp.explain(model, X, target=1, composite=EpsilonPlusFlat())
    with torch.no_grad():
        torch.testing.assert_close(result.output, model(X), rtol=1e-10, atol=1e-10)
    assert result.coverage.complete


class _Untraceable(nn.Module):
    """A loop over a tensor's values: no trace can follow it, so the module structure is canonized. (A
    data-dependent ``if`` is followed since the trace evaluates conditions: tests/reliability/test_same_function.py)"""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        for value in x.flatten()[:1].tolist():
            out = out + 0 * value
        return out


def test_changes_the_module_structure_fallback_cannot_follow_are_refused():
    model = _Untraceable(_densenet_edited(FOLLOWED["densenet ReLU -> ELU"]))
    with untouched(model), pytest.raises(CanonizationError, match=r"denselayer1.relu1' is a ELU"):
        seqlrp.explain(model, X, composite=EpsilonPlusFlat())
    # a Conv2d subclass before the BN: not fused, the BN kept as an explicit per-channel affine layer
    seq = _Untraceable(_subclassed_sequential())
    with untouched(seq):
        result = seqlrp.explain(seq, X, composite=EpsilonPlusFlat())
    assert result.coverage.complete and "ChannelAffine" in " ".join(result.coverage.rules.values())
    with torch.no_grad():
        torch.testing.assert_close(result.output, seq(X), rtol=1e-10, atol=1e-10)
    # a BN subclass (its own forward) cannot be read as an affine layer: refused, naming it and the trace failure
    inner = _subclassed_sequential()
    inner[1] = randomize_batchnorm(nn.Sequential(_ShiftedBatchNorm(4))).double().eval()[0]
    bad = _Untraceable(inner)
    with untouched(bad), pytest.raises(CanonizationError, match=r"could not fuse the batch norm\(s\) \['inner.1'\]: "
                                                               r"torch.fx could not trace the model"):
        seqlrp.explain(bad, X, composite=EpsilonPlusFlat())


class _ShiftedBatchNorm(nn.BatchNorm2d):
    def forward(self, x):
        return super().forward(x) + 1


def test_hooks_on_rebuilt_modules_are_refused_and_kept_on_copied_ones():
    model = _resnet()
    seen = []
    model.fc.register_forward_hook(lambda m, i, o: seen.append(o.shape))  # copied module: the hook runs
    seqlrp.explain(model, X, composite=EpsilonPlusFlat())
    assert seen == [torch.Size([2, 5])]
    handle = model.layer1[0].conv1.register_forward_hook(lambda m, i, o: o * 0)  # a fused conv: refused
    with untouched(model), pytest.raises(CanonizationError, match=r"'layer1.0.conv1' \(Conv2d\) has forward hooks"):
        seqlrp.explain(model, X, composite=EpsilonPlusFlat())
    handle.remove()
