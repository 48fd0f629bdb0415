"""The AttnLRP softmax rule (Achtibat et al. 2024, Prop. 3.1)."""

from __future__ import annotations

import torch

from .base import Rule


class SoftmaxTaylor(Rule):
    r"""Softmax :math:`s = \mathrm{softmax}(x)` along ``dim``: the Taylor decomposition at :math:`x` (with the
    implicit bias absorbed),

    .. math::
        R_{x_i} = x_i \Big(R_{s_i} - s_i \sum_j R_{s_j}\Big)

    (:math:`= x \odot J^\top (R_s / s)`, gradient × input with the seed :math:`R_s / s`). Inputs that are
    :math:`-\infty` (masked scores) count as 0. Not conservative: the bias share
    :math:`\sum_i R_{s_i} - \sum_i R_{x_i}` is absorbed, as in the paper.
    """

    name = "softmax"
    kinds = frozenset({"softmax"})

    def __init__(self):
        super().__init__()

    def params(self):
        return {}

    @property
    def zero_for_zero_input(self) -> bool:
        return True

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        (x,) = inputs
        r = relevance.to(out.dtype)
        total = r.sum(view.dim, keepdim=True)
        x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)  # (one pass: x where finite, else 0)
        share = r - out * total
        if share.dtype == x.dtype:
            return (x.mul_(share),)  # (x is nan_to_num's new tensor)
        return ((x * share).to(x.dtype),)
