"""The uniform rule for a product of two signals (AttnLRP, Achtibat et al. 2024, Prop. 3.2/3.3)."""

from __future__ import annotations

import torch

from .base import Rule


class Uniform(Rule):
    r"""Product of two signals ``y = f(a, b)``, bilinear (``a ⊙ b``, ``a @ b``, ``Q Kᵀ``, ``A V``, ``u ⊙ act(v)``):
    each operand receives half, distributed within it as the ε-rule would with the other operand held constant.

    .. math::
        R_a = \tfrac12\, a \odot \partial_a\!\Big[f(a, b) \cdot \frac{R_y}{\mathrm{stab}(y)}\Big],\qquad
        R_b = \tfrac12\, b \odot \partial_b\!\Big[f(a, b) \cdot \frac{R_y}{\mathrm{stab}(y)}\Big],
        \qquad \mathrm{stab}(y) = y + \varepsilon\,\mathrm{sign}(y)

    For ``a @ b``: :math:`R_a = \tfrac12 a \odot (S b^\top)`, :math:`R_b = \tfrac12 b \odot (a^\top S)`,
    :math:`S = R_y / \mathrm{stab}(y)`; for ``a ⊙ b``: :math:`R_a = R_b = \tfrac12 R_y\, y / \mathrm{stab}(y)`.
    Since :math:`f` is linear in each operand, :math:`\sum R_a + \sum R_b = \sum y \odot S`: conservative
    as ε → 0.

    Parameters
    ----------
    epsilon : float
        Stabilizer (default 1e-6).
    """

    name = "uniform"
    kinds = frozenset({"bilinear"})

    def __init__(self, epsilon: float | None = None):
        super().__init__(epsilon)

    def params(self):
        return {"epsilon": self.epsilon}

    @property
    def zero_for_zero_input(self) -> bool:
        return True  # (each operand's relevance is a multiple of itself)

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        a, b = inputs
        if self.epsilon > 0:  # R / (2 stab(y)): the half folded into the denominator (doubling is exact)
            doubled = torch.copysign(out.new_full((), 2 * self.epsilon), out + 0.0).add_(out, alpha=2)
            s = self._divide_stabilized(relevance, doubled)
        else:
            s = 0.5 * self._divide(relevance, out)
        ga, gb = view.vjp(a, b, s)
        return a * ga, b * gb
