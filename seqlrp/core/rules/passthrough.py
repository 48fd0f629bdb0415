"""Rules that do not mix values: pass (activations) and winner-takes-all (max pooling)."""

from __future__ import annotations

from .base import Rule


class Pass(Rule):
    r"""Identity: :math:`R_{\text{in}} = R_{\text{out}}` (elementwise activations)."""

    name = "pass"

    kinds = frozenset({"elementwise"})
    passes_on_active = True

    def params(self):
        return {}

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        return (relevance,)


class WinnerTakesAll(Rule):
    r"""Max pooling: all relevance of an output goes to the input that won the max (gradient route)."""

    name = "winner_takes_all"

    kinds = frozenset({"route"})

    def params(self):
        return {}

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        (x,) = inputs
        return (view.vjp(x, relevance),)
