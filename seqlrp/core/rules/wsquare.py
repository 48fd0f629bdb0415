"""Input-independent rules: w² and flat."""

from __future__ import annotations

import abc

import torch

from .base import Rule


class _InputFree(Rule):
    """``R_j = sum_k m(w_jk) / (sum_i m(w_ik) + m(b_k)) R_k`` for a weight map ``m``."""

    kinds = frozenset({"linear"})

    @abc.abstractmethod
    def _map(self, t):
        """The weight map ``m`` (applied to weights and bias)."""

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        (x,) = inputs
        w = self._map(view.weight)
        z = view.apply(torch.ones_like(x[:1]), w)
        bias = self._bias(view)
        if bias is not None:
            z = z + view.bias_term(self._map(bias), out)
        return (view.vjp(self._divide(relevance, z), w, x),)


class WSquare(_InputFree):
    r"""LRP-w² (Montavon et al. 2017): :math:`R_j = \sum_k \frac{w_{jk}^2}{\sum_i w_{ik}^2 + b_k^2} R_k`.

    ``ignore_bias=True`` drops :math:`b_k^2`.
    """

    name = "wsquare"

    def _map(self, t):
        return t * t


class Flat(_InputFree):
    r"""Flat rule: :math:`R_j = \sum_k \frac{1}{N_k} R_k` over the inputs ``j`` connected to ``k``.

    The bias is ignored by default; ``ignore_bias=False`` counts it as one more input.
    """

    name = "flat"

    default_ignore_bias = True

    def _map(self, t):
        return torch.ones_like(t)
