"""Gating: the graph proof that a layer's output relevance vanishes where its output is <= 0, and the
one-transpose γ it enables, which must equal the general sign-aware γ exactly (float64)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.core import groups
from seqlrp.core.function import LayerCall
from seqlrp.core.ops import Sum
from seqlrp.core.rules.gamma import Gamma
from seqlrp.core.views import ConvView, DenseView

EXPLAIN = sys.modules["seqlrp.core.pipeline"]  # (the pipeline marks gated layers)


class Net(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> maxpool -> conv -> [tail] with a configurable tail."""

    def __init__(self, tail: str = "plain"):
        super().__init__()
        self.tail = tail
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1), nn.Conv2d(6, 6, 1)
        self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(inplace=True), nn.ReLU()
        self.pool, self.avg = nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)
        self.sum = Sum()

    def forward(self, x):
        a = self.pool(self.r2(self.c2(self.r1(self.c1(x)))))
        if self.tail == "relu_out":  # the explained output is a ReLU's output (the seed hits zero units)
            return self.r3(self.fc(torch.flatten(self.avg(a), 1)))
        z = self.c3(a)
        if self.tail == "residual":  # c3 feeds a sum: its relevance is not gated
            z = self.sum(z, a)
        return self.fc(torch.flatten(self.avg(self.r3(z)), 1))


def composite(**overrides):
    rules = {groups.WEIGHTED: Gamma(0.5), nn.Linear: "epsilon", groups.ACTIVATIONS: "pass",
             groups.MAX_POOLS: "winner_takes_all", groups.AVG_POOLS: "epsilon", Sum: "epsilon"}
    rules.update(overrides)
    return seqlrp.Composite(rules)


def both(monkeypatch, model, x, comp):
    marked = []
    original = EXPLAIN.mark_gated
    monkeypatch.setattr(EXPLAIN, "mark_gated", lambda out: marked.append(original(out)) or marked[-1])
    gated = seqlrp.explain(model, x, 1, comp)
    monkeypatch.setattr(EXPLAIN, "mark_gated", lambda out: 0)
    general = seqlrp.explain(model, x, 1, comp)
    return gated, general, marked[0], [c.name for c in gated.calls if c.gated]


@pytest.mark.parametrize("tail, expected", [("plain", ["c1", "c2", "c3"]), ("residual", ["c1", "c2"]),
                                            ("relu_out", ["c1", "c2"])])
def test_gated_layers_and_equal_relevance(monkeypatch, tail, expected):
    torch.manual_seed(0)
    model = Net(tail).double().eval()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)  # mixed signs: c1's input is not known >= 0
    gated, general, count, names = both(monkeypatch, model, x, composite(fc=Gamma(0.5)))
    assert names == expected and count == len(expected)
    torch.testing.assert_close(gated.relevance, general.relevance, rtol=1e-12, atol=1e-14)
    assert torch.isfinite(gated.relevance).all()


@pytest.mark.parametrize("consumer", [("flat", None), ("wsquare", None), ("epsilon", {"bias_factor": 1.0})])
def test_a_consumer_that_sends_relevance_to_zero_inputs_blocks_gating(monkeypatch, consumer):
    torch.manual_seed(1)
    model = Net().double().eval()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    rule = consumer[0] if consumer[1] is None else consumer
    gated, general, _, names = both(monkeypatch, model, x, composite(c2=rule))
    assert "c1" not in names  # c1 -> r1 -> c2, and c2's rule gives relevance to zero inputs
    torch.testing.assert_close(gated.relevance, general.relevance, rtol=1e-12, atol=1e-14)


def test_ignore_bias_keeps_the_general_path(monkeypatch):
    torch.manual_seed(2)
    model = Net().double().eval()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    gated, general, count, _ = both(monkeypatch, model, x, composite(**{"c*": ("gamma", {"ignore_bias": True})}))
    assert count == 3  # marked, but σ of f(x; W) without the bias is not the ReLU's sign: general path
    torch.testing.assert_close(gated.relevance, general.relevance, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("view_kind", ["conv", "depthwise", "dense"])
@pytest.mark.parametrize("epsilon", [0.0, 1e-6, 0.1])
@pytest.mark.parametrize("signed", [False, True], ids=["input>=0", "signed input"])
def test_gated_rule_equals_the_sign_aware_rule_when_negative_units_have_no_relevance(view_kind, epsilon, signed):
    torch.manual_seed(3)
    draw = torch.randn if signed else torch.rand  # (signed: the one stacked transpose of [W, c|W|])
    if view_kind == "conv":
        layer = nn.Conv2d(4, 5, 3, stride=2, padding=1).double()
        view, x = ConvView(layer), draw(2, 4, 7, 7, dtype=torch.float64)
    elif view_kind == "depthwise":
        layer = nn.Conv2d(4, 4, 3, padding=1, groups=4).double()
        view, x = ConvView(layer), draw(2, 4, 7, 7, dtype=torch.float64)
    else:
        layer = nn.Linear(6, 5).double()
        view, x = DenseView(layer), draw(3, 6, dtype=torch.float64)
    out = layer(x).detach()
    relevance = torch.randn_like(out) * (out > 0)
    rule = Gamma(0.25, epsilon=epsilon)
    (fast,) = rule.relevance(view, (x,), out, relevance, (not signed,), gated=True)
    (slow,) = rule.relevance(view, (x,), out, relevance, (not signed,))
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-15)
    assert not torch.equal(fast, torch.zeros_like(fast))


def test_zero_relevance_stays_zero_where_the_gated_denominator_vanishes():
    layer = nn.Linear(2, 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-1.0, 0.0]]))
        layer.bias.zero_()
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # z = 0 with γ-modified sum 0: 0/0 without care
    out = layer(x).detach()
    for epsilon in (0.0, 1e-6):
        for known in ((True,), (False,)):  # (the signed-input form too: its denominator z + c|a||w| is 0 here)
            (r,) = Gamma(0.25, epsilon=epsilon).relevance(DenseView(layer), (x,), out, torch.zeros_like(out), known,
                                                          gated=True)
            assert torch.equal(r, torch.zeros_like(x))


def test_gating_marks_only_rules_that_use_it(monkeypatch):
    torch.manual_seed(4)
    model = Net().double().eval()
    comp = seqlrp.Composite({groups.WEIGHTED: "zplus", nn.Linear: "epsilon", groups.ACTIVATIONS: "pass",
                             groups.MAX_POOLS: "winner_takes_all", groups.AVG_POOLS: "epsilon"})
    result = seqlrp.explain(model, torch.rand(2, 3, 8, 8, dtype=torch.float64), 0, comp)
    assert not any(c.gated for c in result.calls)
    assert all(isinstance(c, LayerCall) for c in result.calls)


class SqueezeExcite(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> x * sigmoid(fc(mean(x))) -> conv (RegNetY's / MobileNetV3's gate after a
    ReLU; the first conv takes the first-layer rule)."""

    def __init__(self):
        super().__init__()
        self.c0, self.c1, self.c2 = nn.Conv2d(3, 5, 3, padding=1), nn.Conv2d(5, 6, 3, padding=1), nn.Conv2d(6, 4, 1)
        self.fc, self.head = nn.Conv2d(6, 6, 1), nn.Linear(4, 3)

    def forward(self, x):
        a = torch.relu(self.c1(torch.relu(self.c0(x))))
        gate = torch.sigmoid(self.fc(a.mean((2, 3), keepdim=True)))
        return self.head(torch.relu(self.c2(a * gate)).mean((2, 3)))


def test_a_signal_takes_all_product_passes_the_gating_proof_on(monkeypatch):
    """The ReLU output feeds the gate's pooling (no relevance comes back) and the product's signal (relevance 0
    where the signal is 0): c1 is gated, with the general rule's numbers."""
    torch.manual_seed(5)
    model = SqueezeExcite().double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    gated, general, _, names = both(monkeypatch, model, x, seqlrp.cnn.EpsilonGammaBox(-4.0, 4.0))
    assert sorted(names) == ["c1", "c2"]
    assert general.coverage.complete
    torch.testing.assert_close(gated.relevance, general.relevance, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make", [lambda: nn.ReLU6(), lambda: nn.Hardtanh(0.0, 2.0)], ids=["ReLU6", "Hardtanh(0,2)"])
def test_relu6_and_hardtanh_from_zero_gate_like_relu(monkeypatch, make):
    """0 exactly where the input is <= 0 (EfficientNet-Lite, MobileNetV2): the same layers gated as with ReLU and
    the relevance of the general sign-aware path; a Hardtanh whose lower bound is edited to -1 gates nothing."""
    torch.manual_seed(0)
    model = Net("plain").double().eval()
    model.r1, model.r2, model.r3 = make(), make(), make()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    gated, general, count, names = both(monkeypatch, model, x, composite(fc=Gamma(0.5)))
    assert names == ["c1", "c2", "c3"] and count == 3
    torch.testing.assert_close(gated.relevance, general.relevance, rtol=1e-12, atol=1e-14)
    monkeypatch.undo()
    for relu in (model.r1, model.r2, model.r3):
        relu.min_val = -1.0
    gated, general, count, names = both(monkeypatch, model, x, composite(fc=Gamma(0.5)))
    assert names == [] and count == 0
