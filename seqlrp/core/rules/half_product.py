"""The half rule for a product of two signals (MambaLRP's multiplicative gate)."""

from __future__ import annotations

from ..views import View
from .base import Rule


class HalfProduct(Rule):
    r"""``a ⊙ b`` where both factors carry signal: each factor receives half of the product's relevance.

    .. math::
        R_a = R_b = \tfrac12\,\frac{a \odot b}{\mathrm{stab}(a \odot b)}\,R_{a \odot b},
        \qquad \mathrm{stab}(z) = z + \varepsilon\,\mathrm{sign}(z)

    This is Jafari et al.'s (2024, MambaLRP) half-propagation rule for Mamba's gate ``y ⊙ SiLU(z)``
    (their ``x/2 + (x/2).detach()``), the uniform rule of AttnLRP restricted to an element-wise product:
    the ε rule on each factor with the other held constant gives each the full relevance, so both are
    scaled by ½ and the sum is conserved (up to ε). A factor broadcast over the product collects the
    relevance of every unit it fed.

    (A minimal twin of the transformer side's uniform product rule, kept in its own module.)
    """

    name = "half_product"
    kinds = frozenset({"product"})

    def relevance(self, view: View, inputs, out, relevance, nonnegative=()):
        share = self._divide(relevance, out).mul_(out).mul_(0.5)
        return tuple(share if share.shape == x.shape else share.sum_to_size(x.shape) for x in inputs)
