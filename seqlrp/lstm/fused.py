"""The fast path: one ``autograd.Function`` per LSTM layer and direction, ε rules and signal-takes-all.

Its backward is the composition of the unrolled cell's rules (:mod:`seqlrp.lstm.cells`) written
out in closed form, step by step, so the whole sequence costs two small matrix products per step
and one large one at the end:

* ``R(c_t) = R(c_t via c_{t+1}) + R(h_t)`` -- all of ``h_t = o ⊙ tanh(c_t)`` goes to ``c_t``
  (signal-takes-all; tanh passes);
* ``c_t = f ⊙ c_{t-1} + i ⊙ g``: ε over the two summands with ``q = R(c_t) / stab(c_t)``:
  ``R(c_{t-1}) = f ⊙ c_{t-1} ⊙ q + k``, ``R(g) = i ⊙ g ⊙ q + k``, where with Arras's dense share
  ``k = bf · ε · Σ_j sign(c_j) q_j / (2d)``; the gates take nothing;
* ``g = tanh(z_g)`` passes; ``z_g = W_ih[g] x_t + W_hh[g] h_{t-1} + b[g]``: ε over the ``e + d``
  inputs with ``S = R(g) / stab(z_g)``: ``R(h_{t-1}) = h_{t-1} ⊙ (S W_hh[g]) + κ``,
  ``R(x_t) = x_t ⊙ (S W_ih[g]) + κ``, ``κ = bf · Σ_k (b_k + ε sign(z_k)) S_k / (e + d)``.

Padded steps (``mask`` False) copy the state forward and relevance backward unchanged, and give
exactly zero relevance to their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.stabilize import safe_divide, sign0, stabilize


@dataclass
class FusedSpec:
    """Parameters of one LSTM layer-direction and of its rules."""

    weight_ih: Tensor  # (4d, e), PyTorch gate order i, f, g, o
    weight_hh: Tensor  # (4d, d)
    bias: Tensor | None  # (4d,) = b_ih + b_hh
    linear_epsilon: float
    linear_bias_factor: float
    linear_ignore_bias: bool
    sum_epsilon: float
    sum_bias_factor: float
    record: object = None  # callable(relevance_out_sum, relevance_in_sum) for the conservation report


class FusedLSTMDirection(torch.autograd.Function):
    """``forward(spec, x (T,B,e), h0 (B,d), c0 (B,d), mask (T,B,1) or None) -> (out (T,B,d), h_n, c_n)``."""

    @staticmethod
    def forward(ctx, spec: FusedSpec, x: Tensor, h0: Tensor, c0: Tensor, mask: Tensor | None):
        steps, batch, _ = x.shape
        d = spec.weight_hh.shape[1]
        pre = F.linear(x, spec.weight_ih, spec.bias)  # (T, B, 4d): all input projections at once
        w_hh_t = spec.weight_hh.t()
        out = x.new_empty(steps, batch, d)
        cells = x.new_empty(steps + 1, batch, d)  # cells[t + 1] = c_t, cells[0] = c0
        hidden = x.new_empty(steps + 1, batch, d)  # hidden[t + 1] = h_t
        gates = x.new_empty(steps, batch, 3 * d)  # i, f, g (o is not needed by the backward)
        z_g = x.new_empty(steps, batch, d)
        cells[0], hidden[0] = c0, h0
        h, c = h0, c0
        for t in range(steps):
            z = torch.addmm(pre[t], h, w_hh_t)
            act = torch.sigmoid(z)
            g = torch.tanh(z[:, 2 * d:3 * d])
            i, f, o = act[:, :d], act[:, d:2 * d], act[:, 3 * d:]
            c_new = torch.addcmul(f * c, i, g)
            h_new = o * torch.tanh(c_new)
            if mask is not None:
                m = mask[t]
                c_new = torch.where(m, c_new, c)
                h_new = torch.where(m, h_new, h)
                out[t] = h_new * m
            else:
                out[t] = h_new
            gates[t, :, :2 * d] = act[:, :2 * d]
            gates[t, :, 2 * d:] = g
            z_g[t] = z[:, 2 * d:3 * d]
            cells[t + 1], hidden[t + 1] = c_new, h_new
            h, c = h_new, c_new
        ctx.spec = spec
        ctx.save_for_backward(x, cells, hidden, gates, z_g, mask if mask is not None else x.new_empty(0))
        ctx.has_mask = mask is not None
        return out, h, c

    @staticmethod
    def backward(ctx, r_out: Tensor | None, r_hn: Tensor | None, r_cn: Tensor | None):
        spec: FusedSpec = ctx.spec
        x, cells, hidden, gates, z_g, mask = ctx.saved_tensors
        mask = mask if ctx.has_mask else None
        steps, batch, e = x.shape
        d = spec.weight_hh.shape[1]
        w_ih_g = spec.weight_ih[2 * d:3 * d]  # (d, e)
        w_hh_g = spec.weight_hh[2 * d:3 * d]  # (d, d)
        b_g = None if (spec.bias is None or spec.linear_ignore_bias) else spec.bias[2 * d:3 * d]
        zeros = x.new_zeros(batch, d)
        r_h = zeros if r_hn is None else r_hn
        r_c = zeros if r_cn is None else r_cn
        s_all = x.new_empty(steps, batch, d)
        kappa_all = x.new_zeros(steps, batch, 1) if spec.linear_bias_factor else None
        for t in range(steps - 1, -1, -1):
            if r_out is not None:
                r_h = r_h + (r_out[t] if mask is None else r_out[t] * mask[t])
            c_t, c_prev, h_prev = cells[t + 1], cells[t], hidden[t]
            i, f, g = gates[t, :, :d], gates[t, :, d:2 * d], gates[t, :, 2 * d:]
            r_cell = r_c + r_h
            q = safe_divide(r_cell, stabilize(c_t, spec.sum_epsilon))
            r_c_prev = f * c_prev * q
            r_g = i * g * q
            if spec.sum_bias_factor:
                k = (spec.sum_bias_factor * spec.sum_epsilon / (2 * d)) * (sign0(c_t) * q).sum(1, keepdim=True)
                r_c_prev = r_c_prev + k
                r_g = r_g + k
            if mask is not None:
                r_g = r_g * mask[t]
            z = z_g[t] if b_g is not None or spec.bias is None else z_g[t] - spec.bias[2 * d:3 * d]
            s = safe_divide(r_g, stabilize(z, spec.linear_epsilon))
            r_h_prev = h_prev * (s @ w_hh_g)
            if kappa_all is not None:
                share = spec.linear_epsilon * sign0(z) if b_g is None else b_g + spec.linear_epsilon * sign0(z)
                kappa = (spec.linear_bias_factor / (e + d)) * (share * s).sum(1, keepdim=True)
                r_h_prev = r_h_prev + kappa
                kappa_all[t] = kappa
            s_all[t] = s
            if mask is not None:
                m = mask[t]
                r_h_prev = torch.where(m, r_h_prev, r_h)
                r_c_prev = torch.where(m, r_c_prev, r_c)
            r_h, r_c = r_h_prev, r_c_prev
        r_x = x * (s_all @ w_ih_g)
        if kappa_all is not None:
            r_x = r_x + kappa_all
        if spec.record is not None:
            arriving = (None if r_out is None else r_out.sum(0), r_hn, r_cn)
            spec.record(sum(_batch_sum(t) for t in arriving if t is not None),
                        _batch_sum(r_x.sum(0)) + _batch_sum(r_h) + _batch_sum(r_c))
        return None, r_x, r_h, r_c, None


def _batch_sum(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).sum(1)
