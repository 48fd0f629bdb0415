"""Registries you can see: the built-ins are listed in seqlrp.builtins; a user's rule or view is one line."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

import seqlrp
from seqlrp import builtins
from seqlrp.core import register_view, registry, views
from seqlrp.core.session import handler_of

PACKAGE = Path(seqlrp.__file__).parent


def test_every_builtin_is_registered_from_the_one_list():
    for cls in builtins.RULES:
        assert registry.available_class(cls.name) is cls
    for module_class, view in builtins.VIEWS.items():
        assert views._VIEW_FACTORIES[module_class] is view
    assert set(builtins.DETERMINISTIC) <= views.DETERMINISTIC
    assert handler_of(nn.LSTM(2, 2)) is builtins.HANDLERS[(nn.LSTM, nn.GRU)]
    builtins.register_builtins()  # idempotent: a second call changes nothing and raises nothing
    assert registry.available_class("epsilon") is seqlrp.rules.Epsilon


def test_nothing_registers_itself_on_import():
    """No module but seqlrp/builtins.py calls a registration at module level (decorators included)."""
    calls = re.compile(r"^(@?register(_view|_handler)?\(|DETERMINISTIC\.update|deterministic\()", re.M)
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "builtins.py" and calls.search(p.read_text())]
    assert offenders == []


def test_no_probe_instances_class_name_tests_or_scattered_node_names():
    patterns = {"probe instance": r"\.__new__\((?!cls\))\w+\)", "class-name test": r"__name__ in \(",
                "node name": r"\"\w+Backward\d\""}
    found = {}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for what, pattern in patterns.items():
            if re.search(pattern, text) and not (what == "node name" and path.name == "nodes.py"):
                found.setdefault(what, []).append(str(path.relative_to(PACKAGE)))
    assert found == {}


class MyLinear(nn.Module):
    """A user's own affine layer: ``x W^T + b`` (as nn.Linear, but another class)."""

    def __init__(self, weight, bias):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight, self.bias)


def test_a_user_layer_view_is_one_line_and_gets_the_rules_of_its_kind():
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double().eval()
    mine = nn.Sequential(MyLinear(reference[0].weight.detach().clone(), reference[0].bias.detach().clone()),
                         nn.ReLU(), reference[2]).eval()
    register_view(MyLinear)(views.DenseView)  # the one line
    composite = seqlrp.Composite({(nn.Linear, MyLinear): ("epsilon", {"epsilon": 0.1}), nn.ReLU: "pass"})
    x = torch.randn(3, 4, dtype=torch.float64)
    expected = seqlrp.explain(reference, x, 1, composite)
    try:
        result = seqlrp.explain(mine, x, 1, composite)
    finally:
        del views._VIEW_FACTORIES[MyLinear]
    assert torch.allclose(result.relevance, expected.relevance, rtol=0, atol=1e-12)
    assert "0: MyLinear: epsilon(epsilon=0.1" in str(result.coverage)


def test_the_most_specific_registered_class_wins_whatever_the_order():
    class Base(nn.Linear):
        pass

    class Derived(Base):
        pass

    register_view(Derived)(views.DenseView)
    register_view(Base)(views.ConvView)  # registered later, for the base class: Derived keeps its own
    try:
        assert type(views.view_of(Derived(2, 2))) is views.DenseView
        assert type(views.view_of(nn.Linear(2, 2))) is views.DenseView
    finally:
        del views._VIEW_FACTORIES[Derived], views._VIEW_FACTORIES[Base]


def test_rules_are_found_by_class_through_the_composite():
    composite = seqlrp.Composite({(nn.Conv2d, nn.Linear): "zero", nn.Module: "pass"})
    assert composite.by_class(nn.Linear).name == "zero"
    assert composite.by_class(nn.Bilinear).name == "pass"  # (issubclass: no instance needed)
    assert composite.by_type(nn.Linear(2, 2)) is composite.by_class(nn.Linear)
