"""LRP-0 and LRP-epsilon (with Arras's bias_factor)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops import SumView, per_sample_total
from ..stabilize import safe_divide, sign0
from ..views import LinearView, PoolView
from .base import Rule


class Epsilon(Rule):
    r"""LRP-ε (Bach et al. 2015), for affine layers and average pooling.

    .. math::
        R_j = \sum_k \frac{a_j w_{jk} + \mathrm{bf}\,(b_k + \varepsilon\sigma_k)/N_k}
                          {z_k + \varepsilon\sigma_k} R_k,
        \qquad z_k = \sum_j a_j w_{jk} + b_k,\quad \sigma_k = \mathrm{sign}(z_k)\ (\mathrm{sign}(0)=1)

    ``N_k`` is the number of inputs connected to unit ``k`` (the fan-in, padding excluded; for poolings
    and sums over time the inputs that are not exactly 0, see :meth:`_pool_share`). With
    ``bias_factor = 0`` the bias and ε shares are absorbed; with ``bias_factor = 1`` they are
    spread evenly over the connected inputs and relevance is conserved exactly (Arras et al. 2017).
    The forward's own ``z`` is reused: no recomputation.

    Parameters
    ----------
    epsilon : float
        Stabilizer (default 1e-6).
    ignore_bias : bool
        Drop ``b`` from the denominator and from the share.
    bias_factor : float
        Fraction of the bias + ε share redistributed to the inputs (0 to 1).
    """

    name = "epsilon"

    kinds = frozenset({"linear", "pool", "sum", "contraction", "norm"})

    def __init__(self, epsilon: float | None = None, ignore_bias: bool | None = None, bias_factor: float = 0.0):
        super().__init__(epsilon, ignore_bias)
        self.bias_factor = self._number("bias_factor", bias_factor, minimum=0.0, maximum=1.0)

    def params(self):
        return {**super().params(), "bias_factor": self.bias_factor}

    @property
    def zero_for_zero_input(self) -> bool:
        return self.bias_factor == 0  # (the bias share goes to every connected input)

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        if isinstance(view, SumView):
            return self._sum(view, inputs, out, relevance)
        if view.kind == "contraction":
            return self._contraction(view, inputs, out, relevance)
        if view.kind == "norm":
            return (self._norm(view, inputs[0], out, relevance),)
        (x,) = inputs
        if isinstance(view, PoolView):
            return (self._pool(view, x, out, relevance),)
        return (self._affine(view, x, out, relevance),)

    def _affine(self, view: LinearView, x: Tensor, out: Tensor, relevance: Tensor) -> Tensor:
        z = self._z_without_bias(view, out) if self.ignore_bias else out
        s = self._divide(relevance, z)
        result = view.vjp(s, view.weight, x).mul_(x)
        if self.bias_factor:
            sigma = sign0(z)
            share = self.epsilon * sigma
            bias = self._bias(view)
            if bias is not None:
                share = share + view.bias_term(bias, out)
            share = self.bias_factor * share * s / view.fan_in(x)
            result = result + view.connect_vjp(share, x)
        return result

    def _pool(self, view: PoolView, x: Tensor, out: Tensor, relevance: Tensor) -> Tensor:
        s = self._divide(relevance, out)
        result = x * view.vjp(s, x.shape)
        if self.bias_factor:
            result = result + self._pool_share(view, x, self.bias_factor * self.epsilon * sign0(out) * s)
        return result

    @staticmethod
    def _pool_share(view: PoolView, x: Tensor, share: Tensor) -> Tensor:
        r"""The ε share of a pooling (a sum over time, a mean, an average pool) split over the inputs that
        contribute, :math:`N_k = \#\{j : w_{jk} \neq 0,\ a_j \neq 0\}`.

        An input that is exactly 0 adds nothing to the pooled value and takes no share: a padded position of
        a sequence (``pad_packed_sequence`` fills it with 0, a mask multiplies it by 0) gets no relevance, so a
        sentence is explained alone as in a padded batch. Where every input of a unit is 0 the share goes to all
        of them (Arras's :math:`1/N`), so nothing is lost. All weights of one window are equal, so
        :math:`\mathrm{share}_k / N_k` per counted input is ``vjp(share_k / Σ_j w_jk [a_j ≠ 0])``.
        """
        nonzero = (x != 0).to(x.dtype)
        counted = view.forward(nonzero)  # Σ_j w_jk [a_j != 0]
        spread = nonzero * view.vjp(safe_divide(share, counted), x.shape)
        empty = share * (counted == 0)  # (units whose every input is 0: to all of them)
        return spread + view.vjp(safe_divide(empty, view.weight_sum(x)), x.shape)

    def _sum(self, view: SumView, inputs, out: Tensor, relevance: Tensor) -> tuple[Tensor | None, ...]:
        # z = sum_m a_m (signed; constants are biases): R_m = a_m R / stab(z) (+ the ε share, per unit or dense
        # as in Arras's cell); a summand broadcast over the output collects the relevance of every unit it feeds
        s = self._divide(relevance, out)
        summands = view.summands(inputs)
        share = None
        if self.bias_factor:
            share = self.bias_factor * self.epsilon * sign0(out) * s
            if getattr(view.module, "dense_share", False):
                share = per_sample_total(share) / (len(summands) * share[0].numel())
            else:
                share = share / len(summands)
            signs = view.signs or (1,) * len(inputs)
            biases = [x if sign > 0 else -x for a, x, sign in zip(summands, inputs, signs, strict=True) if a is None]
            if biases:  # a constant summand is a bias: its share (and the ε share) goes to the signal summands
                signals = len(summands) - len(biases)
                share = (share * len(summands) + self.bias_factor * sum(biases) * s) / signals
        result = []
        for a, x in zip(summands, inputs, strict=True):
            if a is None:
                result.append(None)
                continue
            r = a * s if share is None else a * s + share
            result.append(r if r.shape == x.shape else r.sum_to_size(x.shape))
        return tuple(result)

    def _contraction(self, view, inputs, out: Tensor, relevance: Tensor) -> tuple[Tensor | None, ...]:
        # z = f(gate, signal), linear in the signal: R_signal = signal * f^T_gate(R / stab(z)); the gate gets none
        s = self._divide(relevance, out)
        index, g = view.signal_vjp(inputs, s)
        result = inputs[index] * g
        if self.bias_factor and hasattr(view, "support"):
            result = result + self._contraction_share(view, inputs, index, self.bias_factor * self.epsilon
                                                      * sign0(out) * s)
        return tuple(result if i == index else None for i in range(len(inputs)))

    @staticmethod
    def _contraction_share(view, inputs, index: int, share: Tensor) -> Tensor:
        r"""The ε share of a gate-weighted contraction :math:`z_k = \sum_j g_{kj} v_j`, split evenly over the
        signal entries that contribute (:math:`g_{kj} \neq 0` and :math:`v_j \neq 0`) as in
        :meth:`_pool_share` (to every entry with :math:`g_{kj} \neq 0` where none contributes): attention weights
        of 0 (masked positions) and zero signal (padding) take none. ``view.support(inputs)`` is the same map with
        the gate replaced by its non-zero pattern."""
        support, support_inputs = view.support(inputs)
        signal = inputs[index]
        nonzero = (signal != 0).to(signal.dtype)

        def apply(v):
            return support.signal_apply([v if i == index else x for i, x in enumerate(support_inputs)])

        counted = apply(nonzero)  # #{j: g_kj != 0, v_j != 0}
        _, spread = support.signal_vjp(support_inputs, safe_divide(share, counted))
        connected = apply(torch.ones_like(signal))  # #{j: g_kj != 0}
        _, empty = support.signal_vjp(support_inputs, safe_divide(share * (counted == 0), connected))
        return nonzero * spread + empty

    def _norm(self, view, x: Tensor, out: Tensor, relevance: Tensor) -> Tensor:
        # the normalization's scale held constant: z = J x + b is linear in x (J centres, then scales)
        bias = view.bias_term(out) if view.bias is not None else None
        z = out - bias if self.ignore_bias and bias is not None else out
        s = self._divide(relevance, z)
        result = view.vjp(s, x).mul_(x)
        if self.bias_factor:
            share = self.epsilon * sign0(z)
            if bias is not None and not self.ignore_bias:
                share = share + bias
            result = result + view.connect_vjp(self.bias_factor * share * s / view.fan_in(x), x)
        return result


class Zero(Epsilon):
    r"""LRP-0: :math:`R_j = \sum_k \frac{a_j w_{jk}}{z_k} R_k` (ε = 0; a zero denominator gives 0)."""

    name = "zero"

    default_epsilon = 0.0
