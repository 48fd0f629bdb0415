"""explain(): targets, seeds, composites, the first-layer rule, non-mutation, bad inputs."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import seqlrp

from .helpers import assert_unchanged, snapshot


def small_cnn():
    torch.manual_seed(8)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 5)).double().eval()


def test_relevance_has_input_shape_and_fields():
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    result = seqlrp.explain(model, x)
    assert result.relevance.shape == x.shape
    assert result.output.shape == (2, 5)
    assert torch.equal(result.target, result.output.argmax(1))
    assert result.coverage.complete
    assert set(result.coverage.rules) == {"0", "1", "2", "4"}
    assert "epsilon" in result.coverage.rules["0"]


@pytest.mark.parametrize("target", [3, torch.tensor([1, 4]), lambda out: out.argmin(1)])
def test_target_forms(target):
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    result = seqlrp.explain(model, x, target=target)
    expected = {3: torch.tensor([3, 3])}.get(target if isinstance(target, int) else None)
    if isinstance(target, torch.Tensor):
        expected = target
    if callable(target) and not isinstance(target, torch.Tensor):
        expected = result.output.argmin(1)
    assert torch.equal(result.target, expected)
    # the seed sits on the target logit only
    assert torch.equal(result.seed.nonzero()[:, 1], expected)


def test_seed_one_vs_logit_scales_linearly_for_lrp0():
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    logit = seqlrp.explain(model, x, target=2, composite=seqlrp.ZeroEverywhere())
    one = seqlrp.explain(model, x, target=2, composite=seqlrp.ZeroEverywhere(), seed="one")
    scale = logit.output[:, 2].view(2, 1, 1, 1)
    torch.testing.assert_close(logit.relevance, one.relevance * scale, rtol=1e-10, atol=1e-12)


def test_composite_by_name_first_and_type_precedence():
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    composite = {seqlrp.FIRST: ("zbox", {"low": -3.0, "high": 3.0}), "4": ("epsilon", {"epsilon": 0.5}),
                 seqlrp.groups.WEIGHTED: "zplus", seqlrp.groups.ACTIVATIONS: "pass",
                 seqlrp.groups.MAX_POOLS: "winner_takes_all"}
    result = seqlrp.explain(model, x, composite=composite)
    assert result.coverage.rules["0"].startswith("Conv2d: zbox")
    assert result.coverage.rules["4"].startswith("Linear: epsilon(epsilon=0.5")
    name_first = seqlrp.explain(model, x, composite={"0": "flat", **composite})
    assert name_first.coverage.rules["0"].startswith("Conv2d: flat")


def test_missing_rule_names_module_and_type():
    model = small_cnn()
    with pytest.raises(seqlrp.NoRuleError, match=r"'4' \(Linear\) has no rule"):
        seqlrp.explain(model, torch.randn(1, 3, 8, 8, dtype=torch.float64),
                       composite={nn.Conv2d: "zero", nn.ReLU: "pass", nn.MaxPool2d: "winner_takes_all"})


def test_rule_that_does_not_apply_to_layer_kind():
    model = small_cnn()
    with pytest.raises(seqlrp.NoRuleError, match=r"does not apply to module '2' \(MaxPool2d"):
        seqlrp.explain(model, torch.randn(1, 3, 8, 8, dtype=torch.float64),
                       composite={seqlrp.groups.WEIGHTED: "zero", nn.ReLU: "pass", nn.MaxPool2d: "gamma"})


def test_module_with_parameters_and_no_view_is_refused_by_name():
    class Scaled(nn.Module):  # a custom layer with a parameter and no view
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x * self.scale

    model = nn.Sequential(nn.Linear(4, 4), Scaled(), nn.Linear(4, 2)).eval()
    before = snapshot(model)
    with pytest.raises(seqlrp.NoRuleError, match=r"'1' \(Scaled\) has parameters but no LRP rule"):
        seqlrp.explain(model, torch.randn(2, 4))
    assert_unchanged(model, before)


def test_batchnorm_hints_at_canonization():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(2)).eval()
    model(torch.randn(1, 3, 5, 5))
    with pytest.raises(seqlrp.NoRuleError, match="canonize"):
        seqlrp.explain(model, torch.randn(1, 3, 5, 5))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 3)

    def forward(self, x):
        y = self.b(self.a(x) + x).tanh()
        return (y * y).mean(0, keepdim=True).expand(x.shape[0], 3) * 2


def test_coverage_names_functional_mixing_ops_and_warns():
    model = Residual().eval()
    with pytest.warns(seqlrp.CoverageWarning, match="MulBackward0"):
        result = seqlrp.explain(model, torch.randn(2, 4))
    # the product of two signals (y * y) has no rule; the functional '+', tanh and mean have their twins' rules
    assert set(result.coverage.unruled) == {"MulBackward0"}
    assert result.coverage.rules["torch.add"].startswith("torch.add: epsilon")
    assert result.coverage.rules["torch.tanh"].startswith("torch.tanh: pass")
    assert result.coverage.rules["torch.mean"].startswith("torch.mean: epsilon")
    assert "torch.mul" in result.coverage.rules
    assert not result.coverage.complete
    assert "plain-gradient route" in str(result.coverage)


def test_unmutated_after_success_and_reused_module():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(5, 5), relu, nn.Linear(5, 5), relu, nn.Linear(5, 2)).eval()
    model.register_forward_hook(lambda m, i, o: None)
    before = snapshot(model)
    result = seqlrp.explain(model, torch.randn(3, 5), composite=seqlrp.EpsilonEverywhere(0.1, bias_factor=1.0))
    assert_unchanged(model, before)
    assert sum(1 for c in result.calls if c.name == "1") == 2  # the reused ReLU ran twice, both wrapped


class _TwiceFirst(nn.Module):
    """The first linear layer is called twice: its first call is THE first layer, its second is not."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.fc(torch.relu(self.fc(x))))


def test_a_reused_first_layer_gets_the_first_rule_once_then_its_own_every_time():
    model = _TwiceFirst().eval()
    composite = seqlrp.Composite({seqlrp.core.composites.FIRST: "flat", nn.Linear: "epsilon"})
    for _ in range(2):  # (a second explanation resolves afresh: a new session)
        result = seqlrp.explain(model, torch.randn(3, 4), composite=composite)
        rules = [(c.name, c.rule.name) for c in result.calls if c.module_type == "Linear"]
        assert rules == [("fc", "flat"), ("fc", "epsilon"), ("head", "epsilon")]


class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        self.fc(x)
        raise RuntimeError("boom in the middle of forward")


def test_unmutated_after_exception_mid_way():
    model = Exploding().eval()
    before = snapshot(model)
    with pytest.raises(ValueError, match="boom in the middle"):
        seqlrp.explain(model, torch.randn(2, 4))
    assert_unchanged(model, before)


def test_train_mode_with_dropout_or_batchnorm_is_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    before = snapshot(model)
    with pytest.raises(RuntimeError, match=r"training mode.*'1' \(Dropout\).*model.eval\(\)"):
        seqlrp.explain(model, torch.randn(2, 4))
    assert_unchanged(model, before)
    plain = nn.Sequential(nn.Linear(4, 2))  # train mode without mode-dependent layers is harmless
    seqlrp.explain(plain, torch.randn(2, 4))


@pytest.mark.parametrize("bad,error,match", [
    (torch.tensor([[1.0, float("nan"), 0.0, 1.0]]), ValueError, "1 NaN"),
    (torch.tensor([[1.0, float("inf"), 0.0, 1.0]]), ValueError, "1 infinite"),
    (torch.ones(1, 4, dtype=torch.long), TypeError, "floating-point.*int64"),
    (torch.ones(2, 7), ValueError, r"shape \(2, 7\)"),
    ([[1.0, 2.0]], TypeError, "torch.Tensor"),
])
def test_bad_inputs(bad, error, match):
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    before = snapshot(model)
    with pytest.raises(error, match=match):
        seqlrp.explain(model, bad)
    assert_unchanged(model, before)


@pytest.mark.parametrize("target,error,match", [
    (3, ValueError, "target 3 is out of range for an output with 3 classes"),
    (-1, ValueError, "target -1 is out of range"),
    (torch.tensor([0, 1, 2]), ValueError, r"shape \(2,\)"),
    (torch.tensor([0.0, 1.0]), TypeError, "class indices"),
])
def test_bad_targets(target, error, match):
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    with pytest.raises(error, match=match):
        seqlrp.explain(model, torch.randn(2, 4), target=target)


def test_non_logit_output_is_refused():
    with pytest.raises(ValueError, match=r"logits of shape \(B, C\)"):
        seqlrp.explain(nn.Conv2d(1, 1, 1).eval(), torch.randn(2, 1, 3, 3))


def test_no_coverage_warning_for_complete_models():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seqlrp.explain(small_cnn(), torch.randn(2, 3, 8, 8, dtype=torch.float64))
