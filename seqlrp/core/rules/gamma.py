"""LRP-γ in the sign-aware form."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Rule


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

    name = "gamma"

    kinds = frozenset({"linear"})
    uses_gating = True
    zero_for_zero_input = True

    def __init__(self, gamma: float = 0.25, epsilon: float | None = None, ignore_bias: bool | None = None):
        super().__init__(epsilon, ignore_bias)
        self.gamma = self._number("gamma", gamma, minimum=0.0)

    def params(self):
        return {"gamma": self.gamma, **super().params()}

    def relevance(self, view, inputs, out, relevance, nonnegative=(), gated=False):
        (x,) = inputs
        w = view.weight
        half = self.gamma / 2
        bias = self._bias(view)
        z_is_out = bias is not None or view.bias is None  # (σ must be the sign of the layer's real output)
        if gated and view.channel_bias and z_is_out:
            if nonnegative and nonnegative[0]:
                return (self._gated(view, x, relevance, bias),)
            return (self._gated_signed(view, x, out, relevance, bias),)
        z = out if z_is_out else self._z_without_bias(view, out)
        x_abs = x if nonnegative and nonnegative[0] else x.abs()  # after a ReLU |a| = a: one pass less
        # Everything divided by (1 + γ/2), c = (γ/2) / (1 + γ/2): the denominator is z + σ·bracket with
        # bracket = c (Σ|a||w| + |b|) + ε/(1 + γ/2) >= 0, one convolution whose bias carries the shifts,
        # so it has the sign σ of z; s = R / den is (1 + γ/2) S and σ s = copysign(s, R).
        c, eps = half / (1 + half), self.epsilon / (1 + half)
        w_abs = c * w.abs()
        if view.channel_bias:
            shift = self._shift(w, eps, None if bias is None else c * bias.abs())
            bracket = view.apply(x_abs, w_abs, shift)
        else:
            extra = eps if bias is None else c * view.bias_term(bias.abs(), out) + eps  # (map-sized)
            bracket = view.apply(x_abs, w_abs).add_(extra)
        den = bracket.copysign_(z + 0.0).add_(z)
        s = self._divide_stabilized(relevance, den)
        sigma_s = torch.copysign(s, relevance)
        if x_abs is x:  # one transpose of the stacked weights [W ; c|W|]
            return (view.vjp_pair(s, w, sigma_s, w_abs, x).mul_(x),)
        return (view.vjp(s, w, x).mul_(x).addcmul_(x_abs, view.vjp(sigma_s, w_abs, x)),)

    def _gated_signed(self, view, x: Tensor, z: Tensor, relevance: Tensor, bias: Tensor | None) -> Tensor:
        r"""The rule when :math:`R_k = 0` wherever :math:`z_k \le 0` (a ReLU follows) and the input has either sign.

        Only units with :math:`z_k > 0` carry relevance; there :math:`\sigma_k = +1`, so the denominator is
        :math:`z_k + c\,(\sum_j |a_j||w_{jk}| + |b_k|) + \varepsilon'` (no sign to take) and :math:`\sigma S = S`:
        both transposes, :math:`W^\top S` and :math:`c|W|^\top S`, are ONE transpose with the weights stacked on the
        input side, :math:`R = a \odot W^\top S + |a| \odot c|W|^\top S` (the general form takes two, of two
        different vectors). Where :math:`z_k \le 0` the denominator is clamped to ε', so the zero relevance
        stays zero (never 0/0). Equal to the general form wherever it is defined.
        """
        half = self.gamma / 2
        c, eps = half / (1 + half), self.epsilon / (1 + half)
        w_abs = c * view.weight.abs()
        shift = self._shift(w_abs, eps, None if bias is None else c * bias.abs())
        x_abs = x.abs()
        den = view.apply(x_abs, w_abs, shift).add_(z)
        if eps > 0:
            den = den.clamp_min_(eps)
        s = self._divide_stabilized(relevance, den)
        signed, absolute = view.vjp_stack(s, (view.weight, w_abs), x)
        return (signed * x).addcmul_(x_abs, absolute)  # (split views: no in-place op on them)

    def _gated(self, view, x: Tensor, relevance: Tensor, bias: Tensor | None) -> Tensor:
        r"""The rule when :math:`a \ge 0` and :math:`R_k = 0` wherever :math:`z_k < 0` (a ReLU follows).

        Only units with :math:`z_k \ge 0` carry relevance, and there the denominator is
        :math:`\sum_j a_j (w_{jk} + \gamma w^+_{jk}) + b_k + \gamma b^+_k + \varepsilon` and the numerators
        :math:`a_j (w_{jk} + \gamma w^+_{jk})`: one convolution and ONE transpose with :math:`W + \gamma W^+`
        (the general form needs two). Where :math:`z_k < 0` the denominator is clamped to ε, so the zero
        relevance stays zero (never 0/0).
        """
        w = view.weight
        modified = w + self.gamma * w.clamp(min=0)
        shift = self._shift(w, self.epsilon, None if bias is None else bias + self.gamma * bias.clamp(min=0))
        den = view.apply(x, modified, shift)
        if self.epsilon > 0:
            den = den.clamp_min_(self.epsilon)
        s = self._divide_stabilized(relevance, den)
        return view.vjp(s, modified, x).mul_(x)
