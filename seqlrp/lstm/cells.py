"""The general path: LSTM and GRU cells unrolled as a composition of wrapped ops.

Every value-mixing op of a step is an :class:`~seqlrp.core.function.LRPFunction` with a rule from
the shared registry, so one backward over the whole sequence gives the relevance, whatever rules
are chosen (any registered affine rule for the linear maps, any sum rule for the cell):

LSTM step (PyTorch gate order i, f, g, o)::

    z_g  = Affine([W_ih[g] | W_hh[g]], b[g])([x_t ; h_{t-1}])     linear rule (ε: Arras)
    g    = tanh(z_g)                                              pass
    i, f, o = σ(W_ih[ifo] x_t + W_hh[ifo] h_{t-1} + b[ifo])        gates: no relevance
    c_t  = Sum(f ⊙ c_{t-1}, i ⊙ g)                               sum rule (ε, Arras's dense share)
    each ⊙ is Product(gate, signal)                              signal-takes-all
    h_t  = Product(o, tanh(c_t))                                 signal-takes-all, tanh passes

GRU step (PyTorch: r, z, n)::

    v    = Affine(W_hn, b_hn)(h_{t-1})                            linear rule
    u    = Product(r, v)                                          signal-takes-all
    n    = tanh(Affine([W_in | I], b_in)([x_t ; u]))              linear rule over x_t and u; pass
    h_t  = Sum(Product(1 - z, n), Product(z, h_{t-1}))            sum rule; signal-takes-all

Gates are computed from detached inputs: they receive no relevance by the rule, so no backward
work is spent on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.function import LayerCall, LRPFunction
from ..core.ops import Affine, Product, ProductView, Sum, SumView
from ..core.rules.base import Rule
from ..core.rules.passthrough import Pass
from ..core.views import DETERMINISTIC, DenseView, ElementwiseView, View


@dataclass
class CellRules:
    """Rules for the three kinds of op inside a recurrent cell."""

    linear: Rule
    sum: Rule
    product: Rule


class _Op:
    """One wrapped op inside a cell: a view, a rule and the session's call log."""

    def __init__(self, name: str, view: View, rule: Rule, calls: list | None):
        if not rule.applies_to(view):
            raise TypeError(f"rule {rule!r} does not apply to the {view.kind} op {name!r} of a recurrent cell")
        self.name, self.view, self.rule, self.calls = name, view, rule, calls

    def __call__(self, *inputs: Tensor) -> Tensor:
        call = LayerCall(self.name, type(self.view.module).__name__, self.rule, self.view,
                         quiet=type(self.view.module) in DETERMINISTIC)
        if self.calls is not None:
            self.calls.append(call)
        return LRPFunction.apply(call, *inputs)


def _masked(mask: Tensor | None, new: Tensor, old: Tensor) -> Tensor:
    return new if mask is None else torch.where(mask, new, old)


def lstm_direction(name: str, weights: tuple, x: Tensor, h0: Tensor, c0: Tensor, mask: Tensor | None,
                   rules: CellRules, calls: list | None) -> tuple[Tensor, Tensor, Tensor]:
    """Unrolled LSTM over ``x (T, B, e)``; returns ``(out (T, B, d), h_n, c_n)``."""
    w_ih, w_hh, bias = weights
    d = w_hh.shape[1]
    rows_g = slice(2 * d, 3 * d)
    rows_gates = torch.cat([torch.arange(0, 2 * d), torch.arange(3 * d, 4 * d)]).to(w_ih.device)
    candidate = _Op(f"{name}.candidate", DenseView(Affine(torch.cat([w_ih[rows_g], w_hh[rows_g]], 1),
                                                          None if bias is None else bias[rows_g])),
                    rules.linear, calls)
    gate_affine = Affine(torch.cat([w_ih[rows_gates], w_hh[rows_gates]], 1),
                         None if bias is None else bias[rows_gates])
    tanh = _Op(f"{name}.tanh", ElementwiseView(nn.Tanh()), Pass(), calls)
    product = _Op(f"{name}.product", ProductView(Product()), rules.product, calls)
    cell_sum = _Op(f"{name}.cell", SumView(Sum(dense_share=True)), rules.sum, calls)
    h, c, outs = h0, c0, []
    for t in range(x.shape[0]):
        xh = torch.cat([x[t], h], -1)
        gates = torch.sigmoid(gate_affine(xh.detach()))
        i, f, o = gates[:, :d], gates[:, d:2 * d], gates[:, 2 * d:]
        g = tanh(candidate(xh))
        c_new = cell_sum(product(f, c), product(i, g))
        h_new = product(o, tanh(c_new))
        m = None if mask is None else mask[t]
        outs.append(h_new if m is None else torch.where(m, h_new, torch.zeros_like(h_new)))
        h, c = _masked(m, h_new, h), _masked(m, c_new, c)
    return torch.stack(outs), h, c


def gru_direction(name: str, weights: tuple, x: Tensor, h0: Tensor, mask: Tensor | None,
                  rules: CellRules, calls: list | None) -> tuple[Tensor, Tensor]:
    """Unrolled GRU over ``x (T, B, e)``; returns ``(out (T, B, d), h_n)``."""
    w_ih, w_hh, b_ih, b_hh = weights
    d = w_hh.shape[1]
    eye = torch.eye(d, dtype=w_ih.dtype, device=w_ih.device)
    recurrent = _Op(f"{name}.recurrent", DenseView(Affine(w_hh[2 * d:], None if b_hh is None else b_hh[2 * d:])),
                    rules.linear, calls)
    candidate = _Op(f"{name}.candidate", DenseView(Affine(torch.cat([w_ih[2 * d:], eye], 1),
                                                          None if b_ih is None else b_ih[2 * d:])),
                    rules.linear, calls)
    tanh = _Op(f"{name}.tanh", ElementwiseView(nn.Tanh()), Pass(), calls)
    product = _Op(f"{name}.product", ProductView(Product()), rules.product, calls)
    mix = _Op(f"{name}.mix", SumView(Sum(dense_share=True)), rules.sum, calls)
    h, outs = h0, []
    for t in range(x.shape[0]):
        xt, hd = x[t].detach(), h.detach()
        gi = F.linear(xt, w_ih[:2 * d], None if b_ih is None else b_ih[:2 * d])
        gh = F.linear(hd, w_hh[:2 * d], None if b_hh is None else b_hh[:2 * d])
        r, z = torch.sigmoid(gi + gh).chunk(2, 1)
        u = product(r, recurrent(h))
        n = tanh(candidate(torch.cat([x[t], u], -1)))
        h_new = mix(product(1 - z, n), product(z, h))
        m = None if mask is None else mask[t]
        outs.append(h_new if m is None else torch.where(m, h_new, torch.zeros_like(h_new)))
        h = _masked(m, h_new, h)
    return torch.stack(outs), h

