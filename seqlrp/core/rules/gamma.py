"""LRP-γ in the sign-aware form."""

from __future__ import annotations

from ..registry import register
from ..stabilize import sign0
from .base import Rule


@register("gamma")
class Gamma(Rule):
    r"""LRP-γ (Montavon et al. 2019), sign-aware (Andéol et al. 2021), valid for inputs of either sign.

    Each contribution :math:`c_{jk} = a_j w_{jk}` is amplified on the side of the output's sign:

    .. math::
        R_j = \sum_k \frac{c_{jk} + \gamma\,c_{jk}^{\sigma_k}}
                          {z_k + \gamma\,(\sum_i c_{ik}^{\sigma_k} + b_k^{\sigma_k})} R_k

    where :math:`c^{+} = \max(c, 0)` for :math:`z_k \ge 0` and :math:`c^{-} = \min(c, 0)` for
    :math:`z_k < 0`. Using :math:`c^{\pm} = (c \pm |c|)/2` it costs one extra forward
    :math:`f(|a|; |W|)` and two transposes:
    :math:`R = (1+\tfrac{\gamma}{2})\, a \odot W^\top S + \tfrac{\gamma}{2}\,|a| \odot |W|^\top (\sigma S)`.

    Parameters
    ----------
    gamma : float
        Amplification of the contributions that agree with the output's sign (default 0.25).
    epsilon, ignore_bias
        See :class:`~seqlrp.core.rules.base.Rule`.
    """

    kinds = frozenset({"linear"})

    def __init__(self, gamma: float = 0.25, epsilon: float | None = None, ignore_bias: bool | None = None):
        super().__init__(epsilon, ignore_bias)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def params(self):
        return {"gamma": self.gamma, **super().params()}

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        (x,) = inputs
        w = view.weight
        z = self._z_without_bias(view, out)
        absolute = view.apply(x.abs(), w.abs())
        bias = self._bias(view)
        if bias is not None:
            b = view.bias_term(bias, out)
            z, absolute = z + b, absolute + b.abs()
        sigma = sign0(z)
        half = self.gamma / 2
        s = self._divide(relevance, (1 + half) * z + half * sigma * absolute)
        return ((1 + half) * x * view.vjp(s, w, x.shape) + half * x.abs() * view.vjp(sigma * s, w.abs(), x.shape),)
