"""LRP-aware replacement of ``nn.LSTM`` / ``nn.GRU`` forwards, built from the module's own parameters.

Any ``num_layers``, ``bidirectional``, ``batch_first``, with or without biases (``proj_size=0``),
padded tensors, ``PackedSequence`` inputs and initial states: the outputs equal the module's own
(float64, 1e-12). Attached by :class:`~seqlrp.core.session.Session` to the structural copy of a
model, so ``seqlrp.explain``/``seqlrp.explain_text`` see recurrent layers like any other layer.

Rules for the ops inside the cells come from the composite's special keys :data:`GATE_LINEAR`,
:data:`CELL_SUM`, :data:`GATE_PRODUCT`; by default the affine rule of ``nn.Linear`` in the same
composite (ε), ε with the same parameters for the cell sum, and signal-takes-all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..core.function import LayerCall
from ..core.ops import Product
from ..core.rules.epsilon import Epsilon, Zero
from ..core.rules.products import SignalTakesAll
from ..core.session import NoRuleError, Session
from ..core.stochastic import unwatched
from ..core.views import View
from .cells import CellRules, gru_direction, lstm_direction
from .fused import FusedLSTMLayer, FusedSpec, PackedLayout

GATE_LINEAR = "<recurrent linear>"
CELL_SUM = "<recurrent sum>"
GATE_PRODUCT = "<recurrent product>"


class Tap(torch.autograd.Function):
    """Identity whose backward stores the relevance passing through in ``slot[key]``."""

    @staticmethod
    def forward(ctx, slot: dict, key, x: Tensor) -> Tensor:
        ctx.slot, ctx.key = slot, key
        return x.view_as(x)

    @staticmethod
    def backward(ctx, relevance: Tensor):
        ctx.slot[ctx.key] = relevance.detach()
        return None, None, relevance


def cell_rules(session: Session, module: nn.Module) -> CellRules:
    """The cell's rules: the special keys first, then the composite's rules for ``nn.Linear``, ``Sum`` and
    ``Product`` -- the gate rule is the one every gated product of the model gets."""
    composite = session.composite
    linear = composite.get(GATE_LINEAR) or composite.by_class(nn.Linear) or Epsilon()
    cell_sum = composite.get(CELL_SUM)
    if not cell_sum:  # (the default, built only when the composite has none)
        cell_sum = Epsilon(epsilon=linear.epsilon, bias_factor=linear.bias_factor) if isinstance(linear, Epsilon) \
            else Epsilon()
    product = composite.get(GATE_PRODUCT) or composite.by_class(Product) or SignalTakesAll()
    return CellRules(linear, cell_sum, product)


def _fusable(rules: CellRules, session: Session) -> bool:
    exact = (Epsilon, Zero)  # (the classes themselves: a subclass may change the rule the fused kernel computes)
    return (session.options.get("fused", True) and type(rules.linear) in exact and type(rules.sum) in exact
            and isinstance(rules.product, SignalTakesAll))


def reversal_index(lengths: Tensor | None, steps: int, batch: int, device) -> Tensor:
    """Flat row index that reverses a ``(T, B, ...)`` tensor in time within each sequence's length.

    Padding stays in place. Used with ``index_select`` on the ``(T * B, ...)`` view (10x faster than
    ``gather`` on CPU); the permutation is its own inverse.
    """
    t = torch.arange(steps, device=device)[:, None]
    if lengths is None:
        source = (steps - 1 - t).expand(steps, batch)
    else:
        lengths = lengths.to(device)[None, :]
        source = torch.where(t < lengths, lengths - 1 - t, t)
    return (source * batch + torch.arange(batch, device=device)[None, :]).reshape(-1)


def reverse_within(x: Tensor, index: Tensor) -> Tensor:
    """Apply a :func:`reversal_index` to ``x (T, B, ...)``."""
    return x.reshape(-1, *x.shape[2:]).index_select(0, index).view(x.shape)


class RecurrentForward:
    """The replacement ``forward(input, hx=None)`` of one ``nn.LSTM``/``nn.GRU`` in a session's copy."""

    def __init__(self, session: Session, name: str, module: nn.RNNBase):
        if getattr(module, "proj_size", 0):
            raise NoRuleError(f"{name!r}: an LSTM with proj_size={module.proj_size} has no LRP rules in seqlrp "
                              "(the projection of h_t is not covered); supported: proj_size=0")
        if module.mode not in ("LSTM", "GRU"):
            raise TypeError(f"{name!r}: {module.mode} has no LRP rules (supported: LSTM, GRU)")
        self.session, self.name, self.module = session, name, module
        self.rules = cell_rules(session, module)
        self.fused = module.mode == "LSTM" and _fusable(self.rules, session)
        #: relevance taps of the layers' inputs: ("input", layer, direction) -> (T, B, e)
        self.taps: dict = {}
        #: the initial states created or detached here (leaves): their relevance is asked for explicitly
        self.initial_leaves: list[Tensor] = []
        self.tap_inverse: Tensor | None = None
        self.layout: PackedLayout | None = None  # the fused path's packed layout, and the padded (T, B)
        self.padded_shape: tuple[int, int] | None = None
        self.sorted_indices: Tensor | None = None
        #: where each call appends whether its input was packed (set by explain_text's readback), or None
        self.packed_calls: list[bool] | None = None
        session.recurrent.append(self)
        desc = f"{module.mode}: linear {self.rules.linear!r}, sum {self.rules.sum!r}, product {self.rules.product!r}"
        session.assigned[name] = desc + (" [fused]" if self.fused else " [unrolled]")

    def __call__(self, input, hx=None):
        if self.packed_calls is not None:
            self.packed_calls.append(isinstance(input, PackedSequence))
        # the cell's own ops need no functional rules and draw no random numbers: skip the torch-function
        # dispatch and the stochastic watch (speed)
        with torch._C.DisableTorchFunction(), unwatched():
            return self._forward(input, hx)

    def _forward(self, input, hx):
        if self.fused:
            return self._forward_fused(input, hx)
        m = self.module
        packed = isinstance(input, PackedSequence)
        cpu_lengths = sorted_lengths = batch_sizes = mask = order = inverse = None
        if packed:  # work in the packed (length-sorted) order: no unsorting and re-sorting
            x, cpu_lengths = pad_packed_sequence(PackedSequence(input.data, input.batch_sizes), batch_first=False)
            order, inverse = input.sorted_indices, input.unsorted_indices
            batch_sizes = input.batch_sizes.tolist()
            sorted_lengths = cpu_lengths.to(x.device)
            unbatched = False
        else:
            unbatched = input.dim() == 2
            x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if m.batch_first else input)
        steps, batch, _ = x.shape
        directions = 2 if m.bidirectional else 1
        h0, c0 = self._initial_states(hx, batch, directions, x, unbatched)
        if order is not None:  # user states are in batch order
            h0 = h0.index_select(1, order)
            c0 = None if c0 is None else c0.index_select(1, order)
        if sorted_lengths is not None:
            mask = (torch.arange(steps, device=x.device)[:, None] < sorted_lengths)[..., None]
        reverse = reversal_index(sorted_lengths, steps, batch, x.device) if directions == 2 else None
        self.tap_inverse = inverse
        layer_input, h_n, c_n = x, [], []
        for layer in range(m.num_layers):
            outs = []
            for direction in range(directions):
                k = layer * directions + direction
                xin = Tap.apply(self.taps, ("input", 0, direction), layer_input) if layer == 0 else layer_input
                if direction == 1:
                    xin = reverse_within(xin, reverse)
                out, h, c = self._direction(layer, direction, xin, h0[k], None if c0 is None else c0[k],
                                            mask, batch_sizes, sorted_lengths)
                outs.append(out if direction == 0 else reverse_within(out, reverse))
                h_n.append(h)
                c_n.append(c)
            layer_input = outs[0] if directions == 1 else torch.cat(outs, -1)
        output = layer_input
        h_n = torch.stack(h_n)
        c_n = torch.stack(c_n) if c0 is not None else None
        if inverse is not None:
            h_n = h_n.index_select(1, inverse)
            c_n = None if c_n is None else c_n.index_select(1, inverse)
        if packed:
            data = pack_padded_sequence(output, cpu_lengths, enforce_sorted=True).data
            output = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        elif unbatched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif m.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n if c_n is None else (h_n, c_n))

    def _initial_states(self, hx, batch, directions, x, unbatched):
        m = self.module
        shape = (m.num_layers * directions, batch, m.hidden_size)
        is_lstm = m.mode == "LSTM"
        if hx is None:
            h0, c0 = x.new_zeros(shape), (x.new_zeros(shape) if is_lstm else None)
        else:
            h0, c0 = hx if is_lstm else (hx, None)
            if unbatched:
                h0 = h0.unsqueeze(1)
                c0 = None if c0 is None else c0.unsqueeze(1)
        if torch.is_grad_enabled():  # initial states get relevance too (bias_factor > 0): make them leaves
            h0 = self._leaf(h0)
            c0 = None if c0 is None else self._leaf(c0)
        # (nn.LSTM permutes hx into the packed order and back; we keep the batch order throughout)
        for state, label in ((h0, "h0"), (c0, "c0")):
            if state is not None and tuple(state.shape) != shape:
                raise ValueError(f"{self.name!r}: initial state {label} has shape {tuple(state.shape)}, "
                                 f"expected {shape} (num_layers * num_directions, batch, hidden_size)")
        return h0, c0

    def _leaf(self, state: Tensor) -> Tensor:
        if state.requires_grad:  # computed upstream: its relevance flows on through the graph
            return state
        leaf = state.detach().requires_grad_(True)
        self.initial_leaves.append(leaf)
        return leaf

    def _weights(self, layer: int, direction: int):
        m = self.module
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        w_ih, w_hh = getattr(m, "weight_ih" + suffix), getattr(m, "weight_hh" + suffix)
        b_ih = getattr(m, "bias_ih" + suffix) if m.bias else None
        b_hh = getattr(m, "bias_hh" + suffix) if m.bias else None
        return w_ih, w_hh, b_ih, b_hh

    def _direction(self, layer: int, direction: int, x: Tensor, h0: Tensor, c0: Tensor | None, mask,
                   batch_sizes: list[int] | None, lengths: Tensor | None):
        w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
        label = f"{self.name}.l{layer}" + ("_reverse" if direction == 1 else "")
        if self.module.mode == "GRU":
            out, h = gru_direction(label, (w_ih, w_hh, b_ih, b_hh), x, h0, mask, self.rules, self.session.calls)
            return out, h, None
        bias = None if b_ih is None else b_ih + b_hh
        return lstm_direction(label, (w_ih, w_hh, bias), x, h0, c0, mask, self.rules, self.session.calls)

    def _forward_fused(self, input, hx):
        """All layers on the packed layout (padded input is the packed layout of equal lengths), the
        directions of a layer in one :class:`FusedLSTMLayer`."""
        m = self.module
        packed = isinstance(input, PackedSequence)
        order = inverse = None
        if packed:
            data, batch_sizes = input.data, input.batch_sizes.tolist()
            order, inverse = input.sorted_indices, input.unsorted_indices
            unbatched = False
            batch, steps = batch_sizes[0], len(batch_sizes)
        else:  # (the first layer takes the input as it is: its packed rows are a reshape, see FusedSpec.padded)
            unbatched = input.dim() == 2
            steps, batch = (input.shape[0], 1) if unbatched else \
                (input.shape[1], input.shape[0]) if m.batch_first else input.shape[:2]
            data, batch_sizes = input, [batch] * steps
        directions = 2 if m.bidirectional else 1
        h0, c0 = self._initial_states(hx, batch, directions, data, unbatched)
        if order is not None:  # user states are in batch order
            h0, c0 = h0.index_select(1, order), c0.index_select(1, order)
        layout = PackedLayout.build(batch_sizes, data.device)
        self.layout, self.padded_shape, self.tap_inverse, self.sorted_indices = layout, (steps, batch), inverse, order
        layer_input, h_n, c_n = data, [], []
        single = m.num_layers == 1
        for layer in range(m.num_layers):
            spec = self._spec(layer, directions, layout)
            if layer == 0 and not packed:
                spec.padded = (steps, batch, m.batch_first and not unbatched)
            span = slice(layer * directions, (layer + 1) * directions)
            layer_input, h, c = FusedLSTMLayer.apply(spec, layer_input, h0 if single else h0[span],
                                                     c0 if single else c0[span])
            h_n.append(h)
            c_n.append(c)
        h_n, c_n = (h_n[0], c_n[0]) if single else (torch.cat(h_n), torch.cat(c_n))
        if inverse is not None:
            h_n, c_n = h_n.index_select(1, inverse), c_n.index_select(1, inverse)
        if packed:
            output = PackedSequence(layer_input, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        else:
            output = layer_input.view(steps, batch, -1)
            if unbatched:
                output, h_n, c_n = output.squeeze(1), h_n.squeeze(1), c_n.squeeze(1)
            elif m.batch_first:
                output = output.transpose(0, 1)
        return output, (h_n, c_n)

    def _spec(self, layer: int, directions: int, layout: PackedLayout) -> FusedSpec:
        weights = [self._weights(layer, direction) for direction in range(directions)]
        w_ih = torch.stack([w[0] for w in weights])
        w_hh = torch.stack([w[1] for w in weights])
        bias = None if weights[0][2] is None else torch.stack([w[2] + w[3] for w in weights])
        lin, cell = self.rules.linear, self.rules.sum
        records = []
        for direction in range(directions):
            label = f"{self.name}.l{layer}" + ("_reverse" if direction == 1 else "")
            call = LayerCall(label, "LSTM", lin, View(self.module))
            self.session.calls.append(call)
            records.append(lambda r_out, r_in, call=call: _record(call, r_out, r_in))
        return FusedSpec(w_ih, w_hh, bias, lin.epsilon, lin.bias_factor, lin.ignore_bias, cell.epsilon,
                         cell.bias_factor, layout, records, self.taps if layer == 0 else None)

    def direction_relevance(self) -> Tensor | None:
        """``(D, B, T, e)``: the relevance of the first layer's input that went through each direction, batch-major
        and in batch order (on the fused path's packed rows placed directly: one ``index_copy_`` per direction, no
        transposed copies); None where a direction has none."""
        directions = 2 if self.module.bidirectional else 1
        parts = [self.taps.get(("input", 0, k)) for k in range(directions)]
        if any(p is None for p in parts):
            return None
        if not self.fused:  # ((T, B, e) per direction, in the sorted order of a packed input)
            if self.tap_inverse is not None:
                parts = [p.index_select(1, self.tap_inverse) for p in parts]
            return torch.stack([p.transpose(0, 1) for p in parts])
        steps, batch = self.padded_shape
        layout = self.layout
        if self.tap_inverse is None and parts[0].shape[0] == steps * batch:  # (packed row t * B + b is (t, b))
            return torch.stack([p.view(steps, batch, -1).transpose(0, 1) for p in parts])
        if layout.uniform:  # (no padding: position b * T + t is packed row t * B + (b's place in the sorted order))
            index = (torch.arange(steps, device=layout.step.device)[None, :] * batch
                     + self.tap_inverse.to(layout.step.device)[:, None]).reshape(-1)
            return torch.stack([p.index_select(0, index) for p in parts]).view(directions, batch, steps, -1)
        row = layout.row if self.tap_inverse is None else self.sorted_indices[layout.row]
        out = parts[0].new_zeros(directions, batch * steps, parts[0].shape[-1])
        index = row * steps + layout.step  # (packed row -> position b * T + t)
        for k, part in enumerate(parts):
            out[k].index_copy_(0, index, part)
        return out.view(directions, batch, steps, -1)


def _record(call: LayerCall, relevance_out: Tensor, relevance_in: Tensor) -> None:
    call.relevance_out, call.relevance_in = relevance_out, relevance_in


def recurrent_handler(session: Session, name: str, module: nn.RNNBase) -> Callable:
    return RecurrentForward(session, name, module)
