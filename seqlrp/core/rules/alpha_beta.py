"""LRP-αβ and its special case z⁺ = α1β0."""

from __future__ import annotations

from .base import Rule


class _PositiveNegative(Rule):
    r"""Shared part: the positive and negative contributions :math:`(a_j w_{jk})^\pm`.

    :math:`(aw)^+ = a^+ w^+ + a^- w^-` and :math:`(aw)^- = a^+ w^- + a^- w^+`. The sums are computed
    from these products (never as :math:`(aw \pm |a||w|)/2`, which cancels catastrophically where a
    unit has no contribution of one sign), and :math:`\sum(aw)^- = z - \sum(aw)^+` reuses the
    forward's ``z``. When the input is known to be non-negative (it comes from a ReLU, see
    :func:`seqlrp.core.function.known_nonnegative`), the :math:`a^-` terms are skipped: no host sync.
    """

    kinds = frozenset({"linear"})
    alpha, beta = 1.0, 0.0
    zero_for_zero_input = True

    def relevance(self, view, inputs, out, relevance, nonnegative=(False,)):
        (x,) = inputs
        w = view.weight
        wp = w.clamp(min=0)
        wn = w.clamp(max=0) if self.beta or not nonnegative[0] else None  # (a⁻ = 0 and no β part: W⁻ unused)
        bias = self._bias(view)
        # Σ(aw)⁺ + b⁺ >= 0, so its stabilized form is Σ(aw)⁺ + b⁺ + ε: the shift rides in the conv's bias
        shift = None
        if view.channel_bias and self.epsilon > 0:
            shift = self._shift(w, self.epsilon, None if bias is None else bias.clamp(min=0))
        if nonnegative[0]:
            xp, xn = x, None
            positive = view.apply(xp, wp, shift)
        else:  # f(a⁺; W⁺) + f(a⁻; W⁻), in one call where the layer allows
            positive, xp, xn = view.signed_apply(x, wp, wn, shift)
        if shift is None:  # no per-unit bias slot (a bias map), or ε = 0: b⁺ added here in one pass
            extra = view.bias_term(bias.clamp(min=0), out) if bias is not None else None
            fold = self.epsilon > 0 and not self.beta  # ε joins it unless αβ needs the unstabilized sum
            if fold:
                extra = self.epsilon if extra is None else extra + self.epsilon
            if extra is not None:
                positive = positive.add_(extra)
            sp = self._divide_stabilized(relevance, positive) if fold else self._divide_signed(relevance, positive, 1.0)
        else:
            stabilized = positive
            if self.beta:
                positive = positive - self.epsilon  # the unstabilized sum, for the negative part below
            sp = self._divide_stabilized(relevance, stabilized)  # (overwrites ``stabilized``)
        if self.alpha != 1:
            sp = self.alpha * sp
        if not self.beta:
            if xn is None:
                return (view.vjp(sp, wp, x).mul_(xp),)  # (a fresh tensor: in place saves a pass of allocation)
            gp, gn = view.vjp_stack(sp, (wp, wn), x)  # (one transposed call where the layer allows)
            return (gp.mul_(xp).addcmul_(xn, gn),)
        # Σ(aw)⁻ (+ b⁻) from the forward's z: out - (Σ(aw)⁺ + b⁺) = Σ(aw)⁻ + b⁻
        negative = (out if bias is not None else self._z_without_bias(view, out)) - positive
        sn = self.beta * self._divide(relevance, negative)
        result = xp * (view.vjp(sp, wp, x) - view.vjp(sn, wn, x))
        if xn is not None:
            result = result + xn * (view.vjp(sp, wn, x) - view.vjp(sn, wp, x))
        return (result,)


class AlphaBeta(_PositiveNegative):
    r"""LRP-αβ (Bach et al. 2015) with :math:`\alpha - \beta = 1`.

    .. math::
        R_j = \sum_k \Big( \alpha \frac{(a_j w_{jk})^+}{\sum_i (a_i w_{ik})^+ + b_k^+}
                         - \beta \frac{(a_j w_{jk})^-}{\sum_i (a_i w_{ik})^- + b_k^-} \Big) R_k

    The positive and negative parts are those of the products :math:`a_j w_{jk}`, so the rule is
    right for inputs of either sign.

    Parameters
    ----------
    alpha, beta : float
        Non-negative, with ``alpha - beta == 1`` (default 2, 1).
    epsilon, ignore_bias
        See :class:`~seqlrp.core.rules.base.Rule`.
    """

    name = "alpha_beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, epsilon: float | None = None,
                 ignore_bias: bool | None = None):
        super().__init__(epsilon, ignore_bias)
        alpha, beta = self._number("alpha", alpha, minimum=0.0), self._number("beta", beta, minimum=0.0)
        if abs((alpha - beta) - 1) > 1e-12:
            raise ValueError(f"rule {self.name!r}: alpha - beta must equal 1 (conservation), got alpha={alpha}, "
                             f"beta={beta} (alpha - beta = {alpha - beta}); e.g. alpha=2, beta=1")
        self.alpha, self.beta = alpha, beta

    def params(self):
        return {"alpha": self.alpha, "beta": self.beta, **super().params()}


class ZPlus(_PositiveNegative):
    r"""LRP-z⁺ (= α1β0) on the positive part of the *products*, not of inputs and weights separately.

    .. math::
        R_j = \sum_k \frac{(a_j w_{jk})^+}{\sum_i (a_i w_{ik})^+ + b_k^+} R_k

    (:math:`a^+ w^+` alone would be wrong for negative inputs: first layers, LSTM states.)
    """

    name = "zplus"
