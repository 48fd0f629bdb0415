"""The fast path: one ``autograd.Function`` per LSTM layer and direction, ε rules and signal-takes-all.

Its backward is the composition of the unrolled cell's rules (:mod:`seqlrp.lstm.cells`) written
out in closed form, step by step:

* ``R(c_t) = R(c_t via c_{t+1}) + R(h_t)`` -- all of ``h_t = o ⊙ tanh(c_t)`` goes to ``c_t``
  (signal-takes-all; tanh passes);
* ``c_t = f ⊙ c_{t-1} + i ⊙ g``: ε over the two summands with ``q = R(c_t) / stab(c_t)``:
  ``R(c_{t-1}) = f ⊙ c_{t-1} ⊙ q + k``, ``R(g) = i ⊙ g ⊙ q + k``, where with Arras's dense share
  ``k = bf · ε · Σ_j sign(c_j) q_j / (2d)``; the gates take nothing;
* ``g = tanh(z_g)`` passes; ``z_g = W_ih[g] x_t + W_hh[g] h_{t-1} + b[g]``: ε over the ``e + d``
  inputs with ``S = R(g) / stab(z_g)``: ``R(h_{t-1}) = h_{t-1} ⊙ (S W_hh[g]) + κ``,
  ``R(x_t) = x_t ⊙ (S W_ih[g]) + κ``, ``κ = bf · Σ_k (b_k + ε sign(z_k)) S_k / (e + d)``.

Variable lengths work like a ``PackedSequence``: the batch is sorted by decreasing length and step
``t`` only touches its ``batch_sizes[t]`` active rows, so padding costs nothing, needs no masks,
keeps each row's final state, and gets exactly zero relevance. Everything that does not depend on
the recursion (input projections, stabilized denominators, gate ⊙ signal products, the input
relevance) is computed for all steps at once.
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
    #: active rows per step (non-increasing), or None when every sequence has the full length
    batch_sizes: list[int] | None = None
    #: (B,) lengths on the device, sorted decreasingly, with ``batch_sizes``
    lengths: Tensor | None = None
    record: object = None  # callable(relevance_out_sum, relevance_in_sum) for the conservation report


def _divide(numerator: Tensor, denominator: Tensor, epsilon: float) -> Tensor:
    # with ε > 0 a stabilized denominator is never 0: plain division
    return numerator / denominator if epsilon > 0 else safe_divide(numerator, denominator)


class FusedLSTMDirection(torch.autograd.Function):
    """``forward(spec, x (T,B,e), h0 (B,d), c0 (B,d)) -> (out (T,B,d), h_n (B,d), c_n (B,d))``.

    With ``spec.batch_sizes`` the rows are sorted by decreasing length; ``out`` is 0 at padded steps.
    """

    @staticmethod
    def forward(ctx, spec: FusedSpec, x: Tensor, h0: Tensor, c0: Tensor):
        ctx.set_materialize_grads(False)
        steps, batch, _ = x.shape
        d = spec.weight_hh.shape[1]
        sizes = spec.batch_sizes or [batch] * steps
        # tanh(x) = 2 sigmoid(2x) - 1, and sigmoid is ~3x faster than tanh on CPU: the g rows of the
        # weights are doubled so that ONE sigmoid over all four blocks also gives g (exact up to rounding)
        scale = torch.ones(4 * d, 1, dtype=x.dtype, device=x.device)
        scale[2 * d:3 * d] = 2.0
        w_hh_t = (spec.weight_hh * scale).t()
        pre = F.linear(x, spec.weight_ih * scale, None if spec.bias is None else spec.bias * scale[:, 0])
        zs = torch.empty_like(pre)  # pre-activations (g block doubled)
        act = torch.empty_like(pre)  # sigmoids (the g block holds sigmoid(2 z_g))
        g = x.new_empty(steps, batch, d)  # tanh of the candidate
        cells = x.new_empty(steps + 1, batch, d)  # cells[t + 1] = c_t, cells[0] = c0
        hidden = x.new_empty(steps + 1, batch, d)  # hidden[t + 1] = h_t
        cells[0], hidden[0] = c0, h0
        # (rows past their sequence's end are never written: the backward never reads them either)
        for t in range(steps):
            n = sizes[t]
            z = torch.addmm(pre[t, :n], hidden[t, :n], w_hh_t, out=zs[t, :n])
            a = torch.sigmoid(z, out=act[t, :n])
            gt = torch.mul(a[:, 2 * d:3 * d], 2.0, out=g[t, :n]).sub_(1.0)
            c = torch.addcmul(a[:, d:2 * d] * cells[t, :n], a[:, :d], gt, out=cells[t + 1, :n])
            o = a[:, 3 * d:]
            torch.addcmul(o.neg(), o, torch.sigmoid(c * 2.0), value=2.0, out=hidden[t + 1, :n])  # o tanh(c)
        if spec.batch_sizes is None:
            out, h_n, c_n = hidden[1:].clone(), hidden[steps].clone(), cells[steps].clone()
        else:
            out = hidden[1:].clone()
            for t in range(steps):
                out[t, sizes[t]:] = 0  # padded steps output 0 (as pad_packed_sequence)
            rows = torch.arange(batch, device=x.device)
            h_n, c_n = hidden[spec.lengths, rows], cells[spec.lengths, rows]
        ctx.spec = spec
        ctx.save_for_backward(x, cells, hidden, act, g, zs)
        return out, h_n, c_n

    @staticmethod
    def backward(ctx, r_out: Tensor | None, r_hn: Tensor | None, r_cn: Tensor | None):
        spec: FusedSpec = ctx.spec
        x, cells, hidden, act, g, zs = ctx.saved_tensors
        steps, batch, e = x.shape
        d = spec.weight_hh.shape[1]
        sizes = spec.batch_sizes or [batch] * steps
        w_ih_g = spec.weight_ih[2 * d:3 * d]  # (d, e)
        w_hh_g = spec.weight_hh[2 * d:3 * d]  # (d, d)
        # step-independent parts, for all steps at once
        c_all = cells[1:]
        den_c = stabilize(c_all, spec.sum_epsilon)
        fc = act[..., d:2 * d] * cells[:-1]  # f ⊙ c_{t-1}
        ig = act[..., :d] * g  # i ⊙ g
        z = zs[..., 2 * d:3 * d] * 0.5  # undo the doubling of the g block (exact)
        b_g = None if spec.bias is None else spec.bias[2 * d:3 * d]
        if b_g is not None and spec.linear_ignore_bias:
            z, b_g = z - b_g, None
        den_z = stabilize(z, spec.linear_epsilon)
        if spec.sum_bias_factor:
            sign_c = sign0(c_all) * (spec.sum_bias_factor * spec.sum_epsilon / (2 * d))
        if spec.linear_bias_factor:
            share = spec.linear_epsilon * sign0(z)
            if b_g is not None:
                share = share + b_g
            share = share * (spec.linear_bias_factor / (e + d))
            kappa_all = x.new_zeros(steps, batch, 1)
        r_h = x.new_zeros(batch, d) if r_hn is None else r_hn.clone()
        r_c = x.new_zeros(batch, d) if r_cn is None else r_cn.clone()
        s_all = x.new_zeros(steps, batch, d)
        if not (spec.sum_bias_factor or spec.linear_bias_factor) and spec.sum_epsilon and spec.linear_epsilon:
            # no shares: S = i g / (stab(z) stab(c)) · R(c_t) and R(c_{t-1}) = f c_{t-1} / stab(c) · R(c_t);
            # both factors are known for all steps before the recursion: 5 small ops per step
            to_s = ig / (den_z * den_c)
            to_c = fc / den_c
            for t in range(steps - 1, -1, -1):
                n = sizes[t]
                r_cell = r_c[:n] + r_h[:n]
                if r_out is not None:
                    r_cell += r_out[t, :n]
                s = torch.mul(to_s[t, :n], r_cell, out=s_all[t, :n])
                torch.mul(to_c[t, :n], r_cell, out=r_c[:n])
                torch.mul(hidden[t, :n], s @ w_hh_g, out=r_h[:n])
        else:
            for t in range(steps - 1, -1, -1):
                n = sizes[t]
                r_cell = r_c[:n] + r_h[:n]
                if r_out is not None:
                    r_cell += r_out[t, :n]
                q = _divide(r_cell, den_c[t, :n], spec.sum_epsilon)
                r_g = ig[t, :n] * q
                torch.mul(fc[t, :n], q, out=r_c[:n])  # r_c[:n] was read above: safe to overwrite
                if spec.sum_bias_factor:
                    k = (sign_c[t, :n] * q).sum(1, keepdim=True)
                    r_c[:n] += k
                    r_g += k
                s = _divide(r_g, den_z[t, :n], spec.linear_epsilon)
                s_all[t, :n] = s
                torch.mul(hidden[t, :n], s @ w_hh_g, out=r_h[:n])
                if spec.linear_bias_factor:
                    kappa = (share[t, :n] * s).sum(1, keepdim=True)
                    kappa_all[t, :n] = kappa
                    r_h[:n] += kappa
        r_x = x * (s_all @ w_ih_g)
        if spec.linear_bias_factor:
            r_x = r_x + kappa_all
        if spec.record is not None:
            arriving = (None if r_out is None else r_out.sum(0), r_hn, r_cn)
            spec.record(sum(_batch_sum(t) for t in arriving if t is not None),
                        _batch_sum(r_x.sum(0)) + _batch_sum(r_h) + _batch_sum(r_c))
        return None, r_x, r_h, r_c


def _batch_sum(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).sum(1)
