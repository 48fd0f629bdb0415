"""Rule parameters are validated: a ValueError/TypeError naming the rule and the parameter, never NaN relevance."""

from __future__ import annotations

import math

import pytest
import torch

import seqlrp
from seqlrp.cnn import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat, GammaSchedule, bounds_from_normalization

from .models import text_model

NAN, INF = math.nan, math.inf

#: (rule, parameter) -> the rule's other parameters needed to build it
NUMERIC = {
    ("epsilon", "epsilon"): {}, ("epsilon", "bias_factor"): {}, ("zero", "bias_factor"): {},
    ("gamma", "gamma"): {}, ("gamma", "epsilon"): {},
    ("alpha_beta", "alpha"): {"beta": 1.0}, ("alpha_beta", "beta"): {"alpha": 2.0}, ("alpha_beta", "epsilon"): {},
    ("zplus", "epsilon"): {}, ("zbox", "low"): {"high": 1.0}, ("zbox", "high"): {"low": 0.0},
    ("zbox", "epsilon"): {}, ("flat", "epsilon"): {}, ("wsquare", "epsilon"): {},
}


@pytest.mark.parametrize("value", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("rule,parameter", list(NUMERIC))
def test_non_finite_parameters_are_refused(rule, parameter, value):
    with pytest.raises(ValueError, match=rf"rule '{rule}': {parameter} must be finite"):
        seqlrp.rules.get(rule, **NUMERIC[rule, parameter], **{parameter: value})


@pytest.mark.parametrize("rule,params,match", [
    ("epsilon", {"epsilon": -0.1}, r"rule 'epsilon': epsilon must be >= 0"),
    ("epsilon", {"bias_factor": 1.5}, r"rule 'epsilon': bias_factor must be in \[0.0, 1.0\]"),
    ("gamma", {"gamma": -1.0}, r"rule 'gamma': gamma must be >= 0"),
    ("alpha_beta", {"alpha": 3.0, "beta": 1.0}, r"alpha - beta must equal 1"),
    ("alpha_beta", {"alpha": 0.5, "beta": -0.5}, r"rule 'alpha_beta': beta must be >= 0"),
    ("zbox", {"low": 1.0, "high": 1.0}, r"rule 'zbox': low must be < high"),
    ("zbox", {"low": 2.0, "high": 1.0}, r"rule 'zbox': low must be < high"),
    ("zbox", {"low": torch.tensor([0.0, 1.0]), "high": torch.tensor([1.0, 0.5])}, r"low must be < high"),
    ("zbox", {"low": torch.zeros(2), "high": torch.ones(3)}, r"do not broadcast"),
])
def test_out_of_range_parameters_are_refused(rule, params, match):
    with pytest.raises(ValueError, match=match):
        seqlrp.rules.get(rule, **params)


@pytest.mark.parametrize("rule,params,match", [
    ("gamma", {"gama": 0.25}, r"rule 'gamma' has no parameter 'gama'; its parameters: gamma, epsilon"),
    ("epsilon", {"epsilon": "0.1"}, r"rule 'epsilon': epsilon must be a real number, got '0.1'"),
    ("epsilon", {"ignore_bias": "yes"}, r"rule 'epsilon': ignore_bias must be True or False"),
    ("zbox", {"low": "0"}, r"rule 'zbox': low must be a"),
    ("gamma", {"gamma": True}, r"rule 'gamma': gamma must be a real number, got True"),
    ("no_such_rule", {}, r"no rule named 'no_such_rule'; available rules: .*epsilon"),
])
def test_wrong_parameter_names_and_types_are_refused(rule, params, match):
    with pytest.raises((TypeError, ValueError), match=match):
        seqlrp.rules.get(rule, **params)


@pytest.mark.parametrize("build,match", [
    (lambda: EpsilonGammaBox(low=NAN), r"rule 'zbox': low must be finite"),
    (lambda: EpsilonGammaBox(low=1.0, high=-1.0), r"rule 'zbox': low must be < high"),
    (lambda: EpsilonGammaBox(gamma=INF), r"rule 'gamma': gamma must be finite"),
    (lambda: EpsilonPlusFlat(epsilon=NAN), r"rule 'epsilon': epsilon must be finite"),
    (lambda: EpsilonAlpha2Beta1(stabilizer=-1.0), r"epsilon must be >= 0"),
    (lambda: GammaSchedule(gamma_first=NAN), r"GammaSchedule: gamma_first must be finite"),
    (lambda: GammaSchedule(gamma_last=0.0), r"GammaSchedule: gamma_first and gamma_last must be > 0"),
    (lambda: seqlrp.EpsilonEverywhere(bias_factor=NAN), r"rule 'epsilon': bias_factor must be finite"),
    (lambda: seqlrp.Composite({torch.nn.Linear: ("epsilon", {"epsilon": INF})}), r"epsilon must be finite"),
    (lambda: bounds_from_normalization([0.5], [0.0]), r"std must be positive"),
    (lambda: bounds_from_normalization([NAN], [0.5]), r"mean and std must be finite"),
    (lambda: bounds_from_normalization([0.5, 0.5], [0.5]), r"mean has 2 channels, std 1"),
    (lambda: bounds_from_normalization([0.5], [0.5], low=1.0, high=0.0), r"low must be < high"),
])
def test_composites_validate_their_parameters(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("params,match", [
    ({"epsilon": NAN}, r"rule 'epsilon': epsilon must be finite"),
    ({"bias_factor": INF}, r"rule 'epsilon': bias_factor must be finite"),
    ({"rules": {seqlrp.lstm.CELL_SUM: ("epsilon", {"epsilon": NAN})}}, r"epsilon must be finite"),
])
def test_explain_text_validates_its_rule_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        seqlrp.explain_text(text_model(), torch.tensor([[1, 2, 3]]), **params)
