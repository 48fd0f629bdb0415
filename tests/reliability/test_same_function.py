"""The same function, the same explanation: canonization follows what the forward computes, not how it is written.

Each model below computes exactly the function of a plainly written model (a data-dependent ``if`` that is never
taken, an ``Add()`` module created inside forward, a convolution reused for two layers, a batch norm called twice).
Their canonized batch norms must be fused as the plain model's are, so the relevance equals the plain model's
(1e-6, float64); before, the first two fell back from the traced graph silently (batch norms kept as
ChannelAffine: relevance 80-90% different), the last two kept the shared layers unfused.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seqlrp
from seqlrp.cnn import CanonizationError, EpsilonGammaBox, EpsilonPlusFlat, canonize

from ..cnn.helpers import randomize_batchnorm
from ..core.helpers import untouched

X = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv3, self.bn3 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def body(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return F.relu(self.bn3(self.conv3(h)) + h)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.body(x), 1), 1))


class NeverTakenIf(Plain):
    def forward(self, x):
        if x.abs().max() > 1e6:  # data-dependent, never taken on real inputs
            x = x / x.abs().max()
        return super().forward(x)


class Add(nn.Module):
    def forward(self, a, b):
        return a + b


class AddInsideForward(Plain):
    def body(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return F.relu(Add()(self.bn3(self.conv3(h)), h))


class ReusedConv(Plain):
    """``conv3`` is ``conv2`` (the plain model: two convolutions with equal weights)."""

    def body(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return F.relu(self.bn3(self.conv2(h)) + h)


class BatchNormTwice(Plain):
    """``bn3`` is ``bn2`` (the plain model: two batch norms with equal statistics)."""

    def body(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return F.relu(self.bn2(self.conv3(h)) + h)


def _pair(cls):
    torch.manual_seed(0)
    plain = randomize_batchnorm(Plain()).double().eval()
    model = cls()
    model.load_state_dict(plain.state_dict())
    model = model.double().eval()
    plain = copy.deepcopy(plain)
    with torch.no_grad():
        if cls is ReusedConv:
            plain.conv3.load_state_dict(plain.conv2.state_dict())
        if cls is BatchNormTwice:
            plain.bn3.load_state_dict(plain.bn2.state_dict())
    return model, plain


@pytest.mark.parametrize("cls", [NeverTakenIf, AddInsideForward, ReusedConv, BatchNormTwice])
def test_the_same_function_gets_the_same_explanation(cls):
    model, plain = _pair(cls)
    with torch.no_grad():
        torch.testing.assert_close(model(X), plain(X), rtol=1e-12, atol=1e-12)
    low, high = torch.full((1, 3, 1, 1), -4.0, dtype=X.dtype), torch.full((1, 3, 1, 1), 4.0, dtype=X.dtype)
    with untouched(model), warnings.catch_warnings():
        warnings.simplefilter("error")  # (no warning: nothing falls back)
        canonical = canonize(model, example_input=X)
        for composite in (EpsilonPlusFlat(), EpsilonGammaBox(low, high)):
            ours = seqlrp.explain(model, X, target=torch.tensor([1, 3]), composite=composite)
            theirs = seqlrp.explain(plain, X, target=torch.tensor([1, 3]), composite=composite)
            assert ours.coverage.complete
            scale = theirs.relevance.abs().max()
            assert float((ours.relevance - theirs.relevance).abs().max()) <= 1e-6 * float(scale)
    assert not any(isinstance(m, (nn.BatchNorm2d, seqlrp.cnn.ChannelAffine)) for m in canonical.modules())


def test_a_branch_taken_otherwise_than_on_the_traced_example_is_refused():
    """The canonized model follows the branch the example took; an input taking the other branch is refused."""
    model, _ = _pair(NeverTakenIf)
    canonical = canonize(model, example_input=X)
    with pytest.raises(CanonizationError, match="branch"):
        canonical(X * 1e7)


class Untraceable(Plain):
    """A forward no trace can follow (an iteration over a tensor's values)."""

    def forward(self, x):
        h = self.body(x)
        out = self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))
        for value in x.flatten()[:1].tolist():
            out = out + 0 * value
        return out


def test_where_it_cannot_follow_the_forward_it_warns_naming_the_modules_and_the_fallback():
    model, _ = _pair(Untraceable)
    with pytest.warns(seqlrp.cnn.CanonizationWarning, match="bn3.*ChannelAffine"):
        canonize(model, example_input=X)
