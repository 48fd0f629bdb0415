"""Core: registry, rules, the autograd mechanism, composites, explain()."""

from . import groups, registry, rules
from .composites import FIRST, Composite, EpsilonEverywhere, ZeroEverywhere
from .coverage import Coverage
from .explain import CoverageWarning, explain
from .explanation import Explanation, LayerConservation
from .ops import Contraction, Product, Sum
from .session import NoRuleError, register_handler
from .views import register_view

__all__ = [
    "FIRST",
    "Composite",
    "Contraction",
    "Coverage",
    "CoverageWarning",
    "EpsilonEverywhere",
    "Explanation",
    "LayerConservation",
    "NoRuleError",
    "Product",
    "Sum",
    "ZeroEverywhere",
    "explain",
    "groups",
    "register_handler",
    "register_view",
    "registry",
    "rules",
]
