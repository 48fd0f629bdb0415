"""LRP on canonized CNNs: LRP-0 == gradient x input, conservation, presets, functional residuals, non-mutation."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.cnn import (
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonOnly,
    EpsilonPlus,
    EpsilonPlusFlat,
    GammaSchedule,
    canonize,
)

from ..core.helpers import assert_conserved, assert_unchanged, snapshot
from .helpers import torchvision_model

X = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def zero_composite(ignore_bias=False):
    zero = ("zero", {"ignore_bias": ignore_bias})
    return {seqlrp.groups.WEIGHTED: zero, seqlrp.cnn.Sum: "zero", seqlrp.groups.AVG_POOLS: "zero",
            seqlrp.groups.MAX_POOLS: "winner_takes_all", seqlrp.groups.ACTIVATIONS: "pass",
            seqlrp.cnn.ThreshReLU: "active_pass"}


@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18", "resnet50"])
def test_lrp0_equals_gradient_x_input_on_canonized(name):
    model = torchvision_model(name)
    canonical = canonize(model, example_input=X)
    lrp = seqlrp.explain(canonical, X, target=3, composite=zero_composite())
    gxi = seqlrp.baselines.gradient_x_input(model, X, target=3, seed="one")
    torch.testing.assert_close(lrp.relevance, gxi.relevance, rtol=1e-8, atol=1e-8)


def test_epsilon_only_is_gradient_x_input_at_epsilon_zero_and_damps_above():
    model = torchvision_model("resnet18")
    gxi = seqlrp.baselines.gradient_x_input(model, X, target=3).relevance
    exact = seqlrp.explain(model, X, target=3, composite=EpsilonOnly(epsilon=0.0, stabilizer=0.0))
    torch.testing.assert_close(exact.relevance, gxi, rtol=1e-8, atol=1e-8)
    damped = seqlrp.explain(model, X, target=3, composite=EpsilonOnly(epsilon=0.25))
    assert damped.coverage.rules["conv1"].startswith("Conv2d: epsilon") and "0.25" in damped.coverage.rules["conv1"]
    assert "0.25" in damped.coverage.rules["fc"]
    assert not torch.allclose(damped.relevance, gxi, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_conservation_biases_ignored_epsilon_zero(name):
    model = torchvision_model(name)
    canonical = canonize(model, example_input=X)
    result = seqlrp.explain(canonical, X, composite=zero_composite(ignore_bias=True), record="full")
    rows = result.conservation()
    checked = 0
    for row in rows:
        if "active_pass" in row.rule:  # ThreshReLU drops the relevance of units outputting the constant t
            continue
        # exact up to float64 rounding of the relevance flowing through (LRP-0 without biases can make
        # it large where z - b is small): judged relative to sum |R_out|
        assert_conserved(row)
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("composite", [EpsilonPlusFlat(), EpsilonPlus(), EpsilonAlpha2Beta1(),
                                       EpsilonGammaBox(-3.0, 3.0), GammaSchedule(-3.0, 3.0)],
                         ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("name", ["resnet18", "densenet121", "vgg11_bn"])
def test_presets_on_uncanonized_torchvision_models(composite, name):
    model = torchvision_model(name)
    before = snapshot(model)
    result = seqlrp.explain(model, X, composite=composite)
    assert result.relevance.shape == X.shape and torch.isfinite(result.relevance).all()
    assert result.coverage.complete, result.coverage
    assert_unchanged(model, before)


def test_first_layer_rule_and_gamma_schedule_recipe():
    model = torchvision_model("vgg16")
    low, high = seqlrp.cnn.bounds_from_normalization([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    result = seqlrp.explain(model, X, composite=GammaSchedule(low, high))
    rules = result.coverage.rules
    assert rules["features.0"].startswith("Conv2d: zbox")
    expected = {"features.2": 1.0, "features.5": 10 ** -0.5, "features.10": 0.1, "features.17": 10 ** -1.5,
                "features.28": 0.01}
    for layer, gamma in expected.items():
        assert f"gamma={gamma!r}" in rules[layer] or f"gamma={round(gamma, 16)!r}" in rules[layer], rules[layer]
    assert rules["classifier.0"].startswith("Linear: zero")


def test_bounds_from_normalization():
    low, high = seqlrp.cnn.bounds_from_normalization([0.5, 0.25], [0.5, 0.25])
    torch.testing.assert_close(low.flatten(), torch.tensor([-1.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(high.flatten(), torch.tensor([1.0, 3.0], dtype=torch.float64))


def test_train_mode_model_is_refused_by_explain():
    model = torchvision_model("resnet18").train()
    with pytest.raises(RuntimeError, match="training mode"):
        seqlrp.explain(model, X, composite=EpsilonPlusFlat())


def test_tensor_biased_layers_follow_rules_vs_plain_bn_model():
    """ε with bias_factor=1 conserves through tensor-biased convs (the bias map is in the share)."""
    model = torchvision_model("densenet121")
    canonical = canonize(model, example_input=X)
    eps = ("epsilon", {"epsilon": 0.01, "bias_factor": 1.0})
    composite = {seqlrp.groups.WEIGHTED: eps, seqlrp.cnn.Sum: eps, seqlrp.groups.AVG_POOLS: eps,
                 seqlrp.groups.MAX_POOLS: "winner_takes_all", seqlrp.groups.ACTIVATIONS: "pass",
                 seqlrp.cnn.ThreshReLU: "pass"}
    result = seqlrp.explain(canonical, X, composite=composite, record="full")
    for row in result.conservation():
        assert_conserved(row)


def test_functional_residual_gets_the_sum_rule_of_its_module_twin():
    class Block(nn.Module):
        def __init__(self, explicit: bool):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
            self.sum = seqlrp.cnn.Sum() if explicit else None

        def forward(self, x):
            h = torch.relu(self.conv(x))
            return self.head(self.sum(h, x) if self.sum is not None else h + x)

    torch.manual_seed(0)
    functional, explicit = Block(False).double().eval(), Block(True).double().eval()
    explicit.load_state_dict(functional.state_dict())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        result = seqlrp.explain(functional, x, composite=EpsilonPlusFlat())
    expected = seqlrp.explain(explicit, x, composite=EpsilonPlusFlat())
    torch.testing.assert_close(result.relevance, expected.relevance, rtol=1e-12, atol=1e-12)
    assert result.coverage.rules["torch.add"].startswith("torch.add: epsilon")


@pytest.mark.parametrize("name, gated", [("vgg11_bn", 7), ("resnet18", 8), ("densenet121", 0)])
def test_gated_gamma_equals_the_general_rule_on_torchvision(monkeypatch, name, gated):
    """Convs followed by a ReLU take γ's one-transpose path; the result must not change (float64)."""
    import sys

    explain_module = sys.modules["seqlrp.core.pipeline"]
    model = torchvision_model(name)
    low, high = seqlrp.cnn.bounds_from_normalization([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    fast = seqlrp.explain(model, X, 3, EpsilonGammaBox(low, high))
    monkeypatch.setattr(explain_module, "mark_gated", lambda output: 0)
    slow = seqlrp.explain(model, X, 3, EpsilonGammaBox(low, high))
    assert sum(call.gated for call in fast.calls) == gated
    scale = float(slow.relevance.abs().max())
    torch.testing.assert_close(fast.relevance, slow.relevance, rtol=1e-10, atol=1e-12 * scale)
