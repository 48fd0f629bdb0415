"""Rules that do not mix values: pass (activations) and winner-takes-all (max pooling)."""

from __future__ import annotations

from ..registry import register
from .base import Rule


@register("pass")
class Pass(Rule):
    r"""Identity: :math:`R_{\text{in}} = R_{\text{out}}` (elementwise activations)."""

    kinds = frozenset({"elementwise"})
    passes_on_active = True

    def params(self):
        return {}

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        return (relevance,)


@register("winner_takes_all")
class WinnerTakesAll(Rule):
    r"""Max pooling: all relevance of an output goes to the input that won the max (gradient route)."""

    kinds = frozenset({"route"})

    def params(self):
        return {}

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        (x,) = inputs
        return (view.vjp(x, relevance),)
