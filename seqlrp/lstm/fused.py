"""The fast path: one ``autograd.Function`` per LSTM layer (both directions), ε rules and signal-takes-all.

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

Layout: the packed one of a ``PackedSequence`` -- the rows of all steps one after the other, step
``t``'s ``batch_sizes[t]`` rows contiguous (sequences sorted by decreasing length), so padding costs
nothing (neither in the per-step loop nor in the work done for all steps at once), needs no masks and
gets no relevance. The directions of a bidirectional layer are stacked on a leading axis ``D`` (the
reverse direction's input reversed within each sequence) and run in ONE loop: every per-step op
(a batched matmul, a few element-wise ops) serves both directions. The loop is bound by per-op
overhead, not arithmetic, so the number of ops per step is what counts: 10 in the forward (9 and the
split of the gates; the buffers are split into their steps' blocks once, before the loop), 4 in the
backward with ε and no bias shares (docs/lstm.md, "Speed"). Everything that does not depend on the
recursion (input projections, stabilized denominators, gate ⊙ signal products, the input relevance)
is computed for all steps at once.

Fixed cost (one short sentence is bound by it, docs/lstm.md "Fixed cost"): a layer is ONE autograd node
whatever its directions (the reversal, stacking, output concatenation and input taps happen inside it);
its forward and its backward without shares are each ONE TorchScript call (the ops around the loops
too); layouts are cached by their batch sizes (a pure function of the shapes, never of values).
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.stabilize import safe_divide, sign0, stabilize


@dataclass
class PackedLayout:
    """Where each step's rows are in the packed layout (host lists, device indices): a pure function of
    ``batch_sizes`` and the device, so :meth:`build` keeps the last ones built (small layouts only)."""

    batch_sizes: list[int]  # rows per step, non-increasing; batch_sizes[0] = B
    offsets: list[int]  # first row of each step
    step: Tensor  # (N,) step of each packed row
    row: Tensor  # (N,) sequence (in the sorted order) of each packed row
    last: Tensor  # (B,) packed row of each sequence's last step
    reverse: Tensor  # (N,) packed row of the same sequence at its time-reversed step (its own inverse)
    previous: Tensor  # (N,) row of the state buffers (initial states first) holding each row's previous state
    #: every step has all B rows (equal lengths): row r's previous state is state row r, the last step's rows are
    #: the last B (contiguous blocks: the kernels slice instead of gathering)
    uniform: bool = False
    #: (name, directions) -> the flat row index of :func:`_rows` (see :meth:`flat`)
    flats: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, batch_sizes: list[int], device) -> PackedLayout:
        key = (tuple(batch_sizes), device)
        with _LAYOUTS_LOCK:  # (explanations may run in threads: the LRU's moves and evictions are not atomic)
            layout = _LAYOUTS.get(key)
            if layout is not None:
                _LAYOUTS.move_to_end(key)
                return layout
        layout = cls._build(batch_sizes, device)
        if len(layout.step) <= _CACHED_ROWS:  # (large batches: building is a negligible part of their time)
            with _LAYOUTS_LOCK:
                _LAYOUTS[key] = layout
                if len(_LAYOUTS) > _CACHED_LAYOUTS:
                    _LAYOUTS.popitem(last=False)
        return layout

    @classmethod
    def _build(cls, batch_sizes: list[int], device) -> PackedLayout:
        offsets, total = [], 0
        for n in batch_sizes:
            offsets.append(total)
            total += n
        sizes = torch.tensor(batch_sizes, device=device)
        starts = torch.tensor(offsets, device=device)
        step = torch.repeat_interleave(torch.arange(len(batch_sizes), device=device), sizes, output_size=total)
        row = torch.arange(total, device=device) - starts[step]
        lengths = (sizes[None, :] > torch.arange(batch_sizes[0], device=device)[:, None]).sum(1)  # (B,) sorted
        last = starts[lengths - 1] + torch.arange(batch_sizes[0], device=device)
        reverse = starts[lengths[row] - 1 - step] + row
        before = torch.tensor([0] + offsets[:-1], device=device)  # first row of step t - 1
        previous = torch.where(step == 0, row, batch_sizes[0] + before[step] + row)
        uniform = all(n == batch_sizes[0] for n in batch_sizes)
        return cls(list(batch_sizes), offsets, step, row, last, reverse, previous, uniform)

    def flat(self, name: str, directions: int) -> Tensor:
        """Flat row index into ``(directions, M, d)`` buffers viewed as ``(directions * M, d)``: ``"last"`` (each
        sequence's last row; ``M = N``), ``"last_state"`` (the same in the state buffers, initial states first;
        ``M = B + N``), ``"previous"`` (:attr:`previous`; ``M = B + N``). Built once per layout."""
        key = (name, directions)
        index = self.flats.get(key)
        if index is None:
            batch, rows = self.batch_sizes[0], self.step.shape[0]
            if name == "last":
                index = _flat_index(self.last, directions, rows)
            elif name == "last_state":
                index = _flat_index(self.last + batch, directions, batch + rows)
            else:
                index = _flat_index(self.previous, directions, batch + rows)
            self.flats[key] = index
        return index


#: the last layouts built (keyed by batch sizes and device): explain_text on many small batches of few lengths
#: (length-sorted phrases) builds each once; only layouts of at most _CACHED_ROWS rows are kept
_LAYOUTS: OrderedDict = OrderedDict()
_LAYOUTS_LOCK = threading.Lock()
_CACHED_LAYOUTS = 64
_CACHED_ROWS = 4096


@dataclass
class FusedSpec:
    """Parameters of one LSTM layer (its directions stacked on a leading axis) and of its rules."""

    weight_ih: Tensor  # (D, 4d, e), PyTorch gate order i, f, g, o
    weight_hh: Tensor  # (D, 4d, d)
    bias: Tensor | None  # (D, 4d) = b_ih + b_hh
    linear_epsilon: float
    linear_bias_factor: float
    linear_ignore_bias: bool
    sum_epsilon: float
    sum_bias_factor: float
    layout: PackedLayout
    #: per direction, callable(relevance_out (B,), relevance_in (B,)) for the conservation report
    record: list[Callable] = field(default_factory=list)
    #: where the backward stores the input relevance of each direction (key ``("input", 0, k)``, packed rows in the
    #: input's order), or None
    taps: dict | None = None
    #: ``(steps, batch, batch_first)`` when ``x`` is the layer's padded input (all lengths equal) as given to the
    #: ``nn.LSTM``, ``(T, B, e)``, ``(B, T, e)`` or unbatched ``(T, e)``: its packed rows are a reshape, done here
    #: (no autograd nodes of their own); None when ``x`` is packed rows already
    padded: tuple[int, int, bool] | None = None


def _divide(numerator: Tensor, denominator: Tensor, epsilon: float) -> Tensor:
    # with ε > 0 a stabilized denominator is never 0: plain division
    return numerator / denominator if epsilon > 0 else safe_divide(numerator, denominator)


class FusedLSTMLayer(torch.autograd.Function):
    """``forward(spec, x (N,e), h0 (D,B,d), c0 (D,B,d)) -> (out (N,D*d), h_n (D,B,d), c_n (D,B,d))``.

    ``x`` and ``out`` are packed data (``spec.layout``), the sequences sorted by decreasing length, ``out`` the
    directions' outputs side by side (as ``nn.LSTM``'s). Inside, direction ``k`` runs on its input in its own time
    order (the reverse direction's reversed within each sequence), the directions stacked on a leading axis; the
    reversal, the stacking and the input taps are part of this one node (no autograd node of their own).
    """

    @staticmethod
    def forward(ctx, spec: FusedSpec, x: Tensor, h0: Tensor, c0: Tensor):
        ctx.set_materialize_grads(False)
        input_shape = x.shape
        layout = spec.layout
        directions, d = spec.weight_hh.shape[0], spec.weight_hh.shape[2]
        # tanh(x) = 2 sigmoid(2x) - 1, and sigmoid is ~3x faster than tanh on CPU: the g rows of the weights
        # are doubled so that ONE sigmoid over all four blocks also gives g (exact up to rounding)
        scale = _gate_scale(d, x.dtype, x.device)
        if spec.padded is not None:  # (time-major rows: row t * B + b is step t of sequence b)
            x = (x.transpose(0, 1) if spec.padded[2] else x).reshape(-1, x.shape[-1])
        x, cells, hidden, act, out, h_n, c_n = _steps("forward_layer")(
            x, spec.weight_ih, spec.weight_hh, spec.bias, scale, h0, c0, layout.batch_sizes, layout.reverse,
            layout.flat("last_state", directions), layout.uniform)
        ctx.spec, ctx.input_shape = spec, input_shape
        ctx.save_for_backward(x, cells, hidden, act)
        return out, h_n, c_n

    @staticmethod
    def backward(ctx, r_out: Tensor | None, r_hn: Tensor | None, r_cn: Tensor | None):
        spec: FusedSpec = ctx.spec
        layout = spec.layout
        x, cells, hidden, act = ctx.saved_tensors
        directions, d = x.shape[0], spec.weight_hh.shape[2]
        g_ = slice(2 * d, 3 * d)
        b_g = None if spec.bias is None or spec.linear_ignore_bias else spec.bias[:, None, g_]
        flats = (layout.flat("previous", directions), layout.flat("last", directions))
        record = bool(spec.record)
        if not (spec.sum_bias_factor or spec.linear_bias_factor) and spec.sum_epsilon and spec.linear_epsilon:
            result = _steps("backward_layer")(x, cells, hidden, act, spec.weight_ih, spec.weight_hh, b_g, r_out, r_hn,
                                              r_cn, *flats, layout.reverse, layout.row, layout.batch_sizes,
                                              layout.uniform, spec.sum_epsilon, spec.linear_epsilon, record)
        else:
            rc, out_rows = _arriving(r_out, r_hn, r_cn, x, layout.reverse, flats[1], d, record)
            r_x, r_h0, r_c0 = _backward_shares(spec, x, cells, hidden, act, b_g, rc, flats[0])
            result = _leaving(r_x, r_h0, r_c0, out_rows, r_hn, r_cn, layout.reverse, layout.row, record)
        r_in, r_h0, r_c0, tap_forward, tap_reverse, out_total, in_total = result
        if out_total is not None:
            for k, call_record in enumerate(spec.record):
                call_record(out_total[k], in_total[k])
        if spec.taps is not None:
            spec.taps[("input", 0, 0)] = tap_forward
            if directions == 2:
                spec.taps[("input", 0, 1)] = tap_reverse
        if spec.padded is not None:  # (the input's own shape)
            steps, batch, batch_first = spec.padded
            r_in = r_in.view(steps, batch, -1)
            r_in = r_in.transpose(0, 1) if batch_first else r_in.view(ctx.input_shape)
        return None, r_in, r_h0, r_c0


def _backward_shares(spec: FusedSpec, x: Tensor, cells: Tensor, hidden: Tensor, act: Tensor, b_g: Tensor | None,
                     rc: Tensor, prev_rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The backward's recursion with bias shares (``bias_factor > 0``) or ε = 0: ``(r_x, r_h0, r_c0)``, step by step
    in Python (the scripted :func:`_backward_layer` is the path without shares)."""
    layout = spec.layout
    sizes, offsets = layout.batch_sizes, layout.offsets
    directions, rows, e = x.shape
    batch, d = sizes[0], spec.weight_hh.shape[2]
    i_, f_, g_ = (slice(k * d, (k + 1) * d) for k in range(3))
    w_ih_g = spec.weight_ih[:, g_]  # (D, d, e)
    w_hh_g = spec.weight_hh[:, g_]  # (D, d, d)
    # step-independent parts, for all rows at once
    c_all = cells[:, batch:]
    den_c = stabilize(c_all, spec.sum_epsilon)
    fc = act[..., f_] * _rows(cells, prev_rows, rows)  # f ⊙ c_{t-1}
    ig = act[..., i_] * act[..., g_].mul(2.0).sub_(1.0)  # i ⊙ g
    # the pre-activation of g, recomputed for all rows at once (cheaper than keeping it step by step)
    z = torch.bmm(x, w_ih_g.transpose(1, 2)) if b_g is None else torch.baddbmm(b_g, x, w_ih_g.transpose(1, 2))
    z.baddbmm_(_rows(hidden, prev_rows, rows), w_hh_g.transpose(1, 2))
    den_z = stabilize(z, spec.linear_epsilon)
    r_h0 = x.new_zeros(directions, batch, d)
    r_c0 = x.new_zeros(directions, batch, d)
    s_all = x.new_zeros(directions, rows, d)
    steps = len(sizes)
    if spec.sum_bias_factor:
        sign_c = sign0(c_all).mul_(spec.sum_bias_factor * spec.sum_epsilon / (2 * d))
    if spec.linear_bias_factor:
        share = spec.linear_epsilon * sign0(z)
        if b_g is not None:
            share = share + b_g
        share = share * (spec.linear_bias_factor / (e + d))
        kappa_all = x.new_zeros(directions, rows, 1)
    for t in range(steps - 1, -1, -1):
        n = sizes[t]
        cur = slice(offsets[t], offsets[t] + n)
        q = _divide(rc[:, cur], den_c[:, cur], spec.sum_epsilon)
        r_g = ig[:, cur] * q
        r_c = fc[:, cur] * q
        if spec.sum_bias_factor:
            k = (sign_c[:, cur] * q).sum(-1, keepdim=True)
            r_c += k
            r_g += k
        s = _divide(r_g, den_z[:, cur], spec.linear_epsilon)
        s_all[:, cur] = s
        h_prev = hidden[:, batch + offsets[t - 1]:batch + offsets[t - 1] + n] if t else hidden[:, :n]
        r_h = h_prev * torch.bmm(s, w_hh_g)
        if spec.linear_bias_factor:
            kappa = (share[:, cur] * s).sum(-1, keepdim=True)
            kappa_all[:, cur] = kappa
            r_h += kappa
        if t:
            back = slice(offsets[t - 1], offsets[t - 1] + n)
            rc[:, back] += r_h + r_c
        else:
            r_h0[:, :n], r_c0[:, :n] = r_h, r_c
    r_x = x * torch.bmm(s_all, w_ih_g)
    if spec.linear_bias_factor:
        r_x += kappa_all
    return r_x, r_h0, r_c0


def _rows(buffer: Tensor, flat: Tensor, count: int) -> Tensor:
    """``buffer[:, index]`` for ``(D, M, d)`` and the ``count`` rows ``index``, given as their flat index
    (:meth:`PackedLayout.flat`): one ``index_select`` on the flat rows (much faster on CPU)."""
    directions, size, d = buffer.shape
    return buffer.reshape(directions * size, d).index_select(0, flat).view(directions, count, d)


def _flat_index(index: Tensor, directions: int, size: int) -> Tensor:
    if directions == 1:
        return index
    return (index[None, :] + size * torch.arange(directions, device=index.device)[:, None]).reshape(-1)


_SCALES: dict = {}


def _gate_scale(d: int, dtype, device) -> Tensor:
    """``(4d, 1)``: ones, 2 on the g block (a constant of the shape; built once per size, dtype and device)."""
    key = (d, dtype, device)
    scale = _SCALES.get(key)
    if scale is None:
        scale = torch.ones(4 * d, 1, dtype=dtype, device=device)
        scale[2 * d:3 * d] = 2.0
        if len(_SCALES) < 64:
            _SCALES[key] = scale
    return scale


# The per-step loops. They run as TorchScript (``torch.jit.script``) when it is available: the loop then
# runs in the TorchScript interpreter, without Python's per-op and per-slice overhead (measured in
# docs/lstm.md, "Speed"); where scripting fails they run as the same Python functions.


def _forward_layer(x: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor | None, scale: Tensor, h0: Tensor,
                   c0: Tensor, sizes: list[int], reverse: Tensor, last: Tensor,
                   uniform: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:meth:`FusedLSTMLayer.forward` after the spec is read: ``x (N, e)`` -> the stacked input ``(D, N, e)``, the
    state buffers ``cells``, ``hidden`` ``(D, B + N, d)``, the sigmoids ``act (D, N, 4d)``, ``out (N, D*d)``,
    ``h_n``, ``c_n`` ``(D, B, d)`` (``last``: the flat state rows of each sequence's last step). One TorchScript
    call (the ops before and after the loop cost less there than one by one from Python)."""
    directions, d = weight_hh.shape[0], weight_hh.shape[2]
    rows, batch = x.shape[0], sizes[0]
    x = x.unsqueeze(0).clone() if directions == 1 else torch.stack([x, x.index_select(0, reverse)])
    w_ih = weight_ih * scale
    w_hh_t = (weight_hh * scale).transpose(1, 2)
    if bias is None:
        pre = torch.bmm(x, w_ih.transpose(1, 2))
    else:
        pre = torch.baddbmm((bias * scale.select(1, 0)).unsqueeze(1), x, w_ih.transpose(1, 2))
    act = torch.empty_like(pre)  # sigmoids of all four blocks (the g block holds sigmoid(2 z_g))
    # states: rows 0..B-1 hold the initial state, then the packed rows (row r of step t at B + r)
    cells = x.new_empty([directions, batch + rows, d])
    hidden = x.new_empty([directions, batch + rows, d])
    cells.narrow(1, 0, batch).copy_(c0)
    hidden.narrow(1, 0, batch).copy_(h0)
    _forward_steps(pre, act, cells, hidden, w_hh_t, sizes, batch, d)
    if directions == 1:
        out = hidden[0].narrow(0, batch, rows).clone()
    else:  # (the reverse direction's rows back in the input's time order)
        out = torch.cat([hidden[0].narrow(0, batch, rows), hidden[1].narrow(0, batch, rows).index_select(0, reverse)],
                        -1)
    if uniform:  # (the last step's block: the last B state rows)
        h_n, c_n = hidden.narrow(1, rows, batch).clone(), cells.narrow(1, rows, batch).clone()
    else:
        size = batch + rows
        h_n = hidden.reshape(directions * size, d).index_select(0, last).view(directions, batch, d)
        c_n = cells.reshape(directions * size, d).index_select(0, last).view(directions, batch, d)
    return x, cells, hidden, act, out, h_n, c_n


def _forward_steps(pre: Tensor, act: Tensor, cells: Tensor, hidden: Tensor, w_hh_t: Tensor, sizes: list[int],
                   batch: int, d: int) -> None:
    """The recursion of the forward: 10 ops per step for all directions (the pre-activations are not kept).

    The loop is bound by per-op overhead: each buffer is split into its steps' blocks by ONE op before it (a state
    block is narrowed only where the batch shrinks)."""
    pres, acts = pre.split(sizes, 1), act.split(sizes, 1)
    blocks = [batch] + sizes  # the state buffers: the initial states, then each step's rows
    cell_blocks, hidden_blocks = cells.split(blocks, 1), hidden.split(blocks, 1)
    for t in range(len(sizes)):
        n = sizes[t]
        c_prev, h_prev = cell_blocks[t], hidden_blocks[t]
        if blocks[t] != n:
            c_prev, h_prev = c_prev.narrow(1, 0, n), h_prev.narrow(1, 0, n)
        a = torch.sigmoid(torch.baddbmm(pres[t], h_prev, w_hh_t), out=acts[t])
        i, f, g, o = a.split(d, 2)
        c = torch.mul(f, c_prev, out=cell_blocks[t + 1])
        c.addcmul_(i, g, value=2.0).sub_(i)  # + i (2 sigmoid(2 z_g) - 1) = + i g
        torch.addcmul(o.neg(), o, torch.sigmoid(c * 2.0), value=2.0, out=hidden_blocks[t + 1])  # o tanh(c)


def _arriving(r_out: Tensor | None, r_hn: Tensor | None, r_cn: Tensor | None, x: Tensor, reverse: Tensor,
              last: Tensor, d: int, record: bool) -> tuple[Tensor, Tensor | None]:
    """``rc (D, N, d)``, where ``rc[:, r]`` accumulates R(c_t) of packed row ``r``: R(out) (the reverse direction's
    in its own time order) and R(h_n), R(c_n) arrive here (``last``: the flat rows of each sequence's last step),
    then the recursion adds R(c_t via c_{t+1}) and R(h_t) from step t + 1 before step t reads it. And, for the
    conservation record, the arriving R(out) per row ``(D, N)`` (None without R(out) or without a record)."""
    directions, rows = x.shape[0], x.shape[1]
    if r_out is None:
        rc = x.new_zeros([directions, rows, d])
    elif directions == 1:
        rc = r_out.unsqueeze(0).clone()
    else:
        rc = torch.stack([r_out.narrow(1, 0, d), r_out.narrow(1, d, d).index_select(0, reverse)])
    out_rows: Tensor | None = None
    if r_out is not None and record:
        out_rows = rc.sum(-1)  # (before anything is added to rc)
    flat = rc.view(directions * rows, d)
    if r_hn is not None:
        flat.index_add_(0, last, r_hn.reshape(-1, d))
    if r_cn is not None:
        flat.index_add_(0, last, r_cn.reshape(-1, d))
    return rc, out_rows


def _leaving(r_x: Tensor, r_h0: Tensor, r_c0: Tensor, out_rows: Tensor | None, r_hn: Tensor | None,
             r_cn: Tensor | None, reverse: Tensor, row: Tensor, record: bool) -> tuple[
             Tensor, Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """The layer input's relevance ``r_in (N, e)`` (the reverse direction's part back in the input's order, added to
    the forward's), ``r_h0``, ``r_c0``, the two directions' parts (the input taps), and with ``record`` the relevance
    out of and into the layer per direction and sequence ``(D, B)`` (the conservation report)."""
    directions, rows, batch = r_x.shape[0], r_x.shape[1], r_h0.shape[1]
    tap_forward = r_x[0]
    tap_reverse: Tensor | None = None
    r_in = tap_forward
    if directions == 2:
        tap_reverse = r_x[1].index_select(0, reverse)
        r_in = r_in + tap_reverse
    out_total: Tensor | None = None
    in_total: Tensor | None = None
    if record:
        arriving = r_x.new_zeros([directions, rows]) if out_rows is None else out_rows
        total = r_x.new_zeros([directions, batch]).index_add_(1, row, arriving)
        if r_hn is not None:
            total = total + r_hn.sum(-1)
        if r_cn is not None:
            total = total + r_cn.sum(-1)
        out_total = total
        in_total = r_x.new_zeros([directions, batch]).index_add_(1, row, r_x.sum(-1)) + r_h0.sum(-1) + r_c0.sum(-1)
    return r_in, r_h0, r_c0, tap_forward, tap_reverse, out_total, in_total


def _backward_layer(x: Tensor, cells: Tensor, hidden: Tensor, act: Tensor, weight_ih: Tensor, weight_hh: Tensor,
                    b_g: Tensor | None, r_out: Tensor | None, r_hn: Tensor | None, r_cn: Tensor | None,
                    previous: Tensor, last: Tensor, reverse: Tensor, row: Tensor, sizes: list[int], uniform: bool,
                    sum_epsilon: float, linear_epsilon: float, record: bool) -> tuple[
                    Tensor, Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """:meth:`FusedLSTMLayer.backward` without shares (ε > 0, no bias factors), as ONE TorchScript call: the
    arriving relevance (:func:`_arriving`), the same ops as :func:`_backward_shares` (``stabilize`` written out:
    ``copysign(ε, z + 0) + z``) with the 4-op recursion, and :func:`_leaving`'s results."""
    directions, rows, d, batch = x.shape[0], x.shape[1], weight_hh.shape[2], sizes[0]
    rc, out_rows = _arriving(r_out, r_hn, r_cn, x, reverse, last, d, record)
    size = batch + rows
    w_ih_g = weight_ih.narrow(1, 2 * d, d)  # (D, d, e)
    w_hh_g = weight_hh.narrow(1, 2 * d, d)  # (D, d, d)
    # step-independent parts, for all rows at once
    c_all = cells.narrow(1, batch, rows)
    den_c = torch.copysign(torch.full([], sum_epsilon, dtype=c_all.dtype, device=c_all.device), c_all + 0.0).add_(c_all)
    if uniform:  # (row r's previous state is state row r)
        c_prev, h_prev = cells.narrow(1, 0, rows), hidden.narrow(1, 0, rows).contiguous()  # (contiguous: the
        # batched matmul below then takes the same path, and rounds the same, as on a gathered copy)
    else:
        c_prev = cells.reshape(directions * size, d).index_select(0, previous).view(directions, rows, d)
        h_prev = hidden.reshape(directions * size, d).index_select(0, previous).view(directions, rows, d)
    fc = act.narrow(2, d, d) * c_prev
    ig = act.narrow(2, 0, d) * act.narrow(2, 2 * d, d).mul(2.0).sub_(1.0)  # i ⊙ g
    # the pre-activation of g, recomputed for all rows at once (cheaper than keeping it step by step)
    if b_g is None:
        z = torch.bmm(x, w_ih_g.transpose(1, 2))
    else:
        z = torch.baddbmm(b_g, x, w_ih_g.transpose(1, 2))
    z.baddbmm_(h_prev, w_hh_g.transpose(1, 2))
    den_z = torch.copysign(torch.full([], linear_epsilon, dtype=z.dtype, device=z.device), z + 0.0).add_(z)
    r_h0 = x.new_zeros([directions, batch, d])
    r_c0 = x.new_zeros([directions, batch, d])
    s_all = x.new_zeros([directions, rows, d])
    # S = i g / (stab(z) stab(c)) · R(c_t) and R(c_{t-1}) = f c_{t-1} / stab(c) · R(c_t): both factors for all rows
    to_s = ig.div_(den_z.mul_(den_c))
    to_c = fc.div_(den_c)
    _backward_steps(rc, to_s, to_c, s_all, hidden, w_hh_g, sizes, batch, r_h0, r_c0)
    r_x = x * torch.bmm(s_all, w_ih_g)
    return _leaving(r_x, r_h0, r_c0, out_rows, r_hn, r_cn, reverse, row, record)


def _backward_steps(rc: Tensor, to_s: Tensor, to_c: Tensor, s_all: Tensor, hidden: Tensor, w_hh_g: Tensor,
                    sizes: list[int], batch: int, r_h0: Tensor, r_c0: Tensor) -> None:
    """The recursion of the backward without shares: 4 ops per step for all directions (the buffers split into
    their steps' blocks once, as in :func:`_forward_steps`)."""
    rcs, to_ss, to_cs, ss = rc.split(sizes, 1), to_s.split(sizes, 1), to_c.split(sizes, 1), s_all.split(sizes, 1)
    hidden_blocks = hidden.split([batch] + sizes, 1)  # (block t holds the states of step t - 1)
    for t in range(len(sizes) - 1, -1, -1):
        n = sizes[t]
        r_cell = rcs[t]
        s = torch.mul(to_ss[t], r_cell, out=ss[t])
        if t > 0:
            r_prev, h_prev = rcs[t - 1], hidden_blocks[t]
            if sizes[t - 1] != n:
                r_prev, h_prev = r_prev.narrow(1, 0, n), h_prev.narrow(1, 0, n)
            r_prev.addcmul_(h_prev, torch.bmm(s, w_hh_g))
            r_prev.addcmul_(to_cs[t], r_cell)
        else:
            torch.mul(hidden_blocks[0], torch.bmm(s, w_hh_g), out=r_h0)
            torch.mul(to_cs[0], r_cell, out=r_c0)


#: False: run the loops as Python (tests compare both)
USE_TORCHSCRIPT = True
_LOOPS = {"forward": _forward_steps, "backward": _backward_steps, "forward_layer": _forward_layer,
          "backward_layer": _backward_layer}
_SCRIPTED: dict = {}


def _steps(name: str):
    """The loop ``name``, scripted once per process (falls back to Python when scripting fails)."""
    if not USE_TORCHSCRIPT:
        return _LOOPS[name]
    if name not in _SCRIPTED:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # (TorchScript's deprecation notice)
                _SCRIPTED[name] = torch.jit.script(_LOOPS[name])
        except Exception:  # noqa: BLE001 - no TorchScript in this build / environment: the same loop in Python
            _SCRIPTED[name] = _LOOPS[name]
    return _SCRIPTED[name]
