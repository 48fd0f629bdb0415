from __future__ import annotations

import pytest

import seqlrp
from seqlrp.rules import Rule


def test_required_names_available():
    assert {"zero", "epsilon", "gamma", "alpha_beta", "zplus", "zbox", "wsquare", "flat", "pass"} <= set(
        seqlrp.rules.available())


def test_get_with_params_and_unknown_name():
    rule = seqlrp.rules.get("gamma", gamma=0.5, epsilon=1e-3)
    assert (rule.gamma, rule.epsilon) == (0.5, 1e-3)
    with pytest.raises(ValueError, match="no rule named 'gama'; available rules: .*alpha_beta"):
        seqlrp.rules.get("gama")


def test_register_a_user_rule_and_reject_duplicates():
    @seqlrp.rules.register("halve_for_test")
    class Halve(Rule):
        kinds = frozenset({"elementwise"})

        def relevance(self, view, inputs, out, relevance, nonnegative=()):
            return (relevance / 2,)

    assert "halve_for_test" in seqlrp.rules.available()
    assert isinstance(seqlrp.rules.get("halve_for_test"), Halve)
    with pytest.raises(ValueError, match="already registered"):
        seqlrp.rules.register("halve_for_test")(type("Other", (Rule,), {}))


@pytest.mark.parametrize("name,params,match", [
    ("alpha_beta", {"alpha": 2.0, "beta": 2.0}, "alpha - beta must equal 1"),
    ("alpha_beta", {"alpha": -1.0, "beta": -2.0}, "alpha must be >= 0"),
    ("epsilon", {"epsilon": -1.0}, "epsilon must be >= 0"),
    ("gamma", {"gamma": -0.1}, "gamma must be >= 0"),
    ("zbox", {"low": 1.0, "high": 0.0}, "low must be < high"),
])
def test_parameter_validation(name, params, match):
    with pytest.raises(ValueError, match=match):
        seqlrp.rules.get(name, **params)
