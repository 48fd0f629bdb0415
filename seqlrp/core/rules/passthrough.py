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


class Rescale(Rule):
    r"""A scaling by a constant, :math:`y = c\,x` (``-x``, ``x * c``, ``x / c``): :math:`R_x = R_y`.

    Every rule of the ε / γ / zB family gives :math:`R_x = \frac{c x}{c x} R_y = R_y` for an op with one
    input per output, whatever the sign of ``c``; the relevance is routed unchanged (summed over the
    positions ``x`` was broadcast to). Not a composite choice: :mod:`seqlrp.core.functional` applies it to
    these ops directly. Adding a constant is not a scaling (``x + c`` is affine: ``c`` is a bias, and the
    composite's sum rule takes it).
    """

    name = "rescale"
    kinds = frozenset({"scale"})

    def params(self):
        return {}

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        (x,) = inputs
        return (relevance if relevance.shape == x.shape else relevance.sum_to_size(x.shape),)
