r"""``nn.MultiheadAttention`` with LRP rules: the attention weights are a gate (Ali et al. 2022's AH rule).

The module's forward is replaced (on the session's copy) by the same computation written with wrapped
ops: the query/key/value projections and the output projection are linear layers with the composite's
``nn.Linear`` rule (by name: ``"<name>.q_proj"``, ``".k_proj"``, ``".v_proj"``, ``".out_proj"``), and
the attention itself is a gate-weighted contraction (:class:`~seqlrp.core.functional.AttentionView`):

.. math::
    o_i = \sum_j A_{ij} v_j,\qquad A = \mathrm{softmax}(q k^\top / \sqrt{d} + M),\qquad
    R(v_j) = v_j \odot \sum_i A_{ij} \frac{R(o_i)}{\mathrm{stab}(o_i)}

-- relevance to each value in proportion to its share of the output, none through the weights (so
none to the queries and keys). Outputs equal the module's own (float64, 1e-12); ``add_bias_kv`` and
``add_zero_attn`` are refused by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .function import LayerCall, LRPFunction
from .functional import AttentionView
from .ops import Affine, Contraction
from .session import NoRuleError, Session
from .views import DETERMINISTIC, DenseView


class MultiheadAttentionForward:
    """The replacement ``forward`` of one ``nn.MultiheadAttention`` in a session's copy."""

    def __init__(self, session: Session, name: str, module: nn.MultiheadAttention):
        if module.bias_k is not None or module.add_zero_attn:
            raise NoRuleError(f"{name!r}: nn.MultiheadAttention with add_bias_kv or add_zero_attn has no LRP rules "
                              "in seqlrp")
        self.session, self.name, self.module = session, name, module
        composite = session.composite
        self.linear = {part: composite.by_name(f"{name}.{part}") or composite.by_class(nn.Linear)
                       for part in ("q_proj", "k_proj", "v_proj", "out_proj")}
        self.contraction = composite.by_name(f"{name}.attention") or composite.by_class(Contraction)
        missing = [part for part, rule in self.linear.items() if rule is None]
        if missing or self.contraction is None:
            raise NoRuleError(f"{name!r} (MultiheadAttention): the composite has no rule for nn.Linear or "
                              "seqlrp.core.Contraction (its projections and attention); add them")
        session.assigned[name] = (f"MultiheadAttention: projections {self.linear['v_proj']!r}, attention "
                                  f"{self.contraction!r} (weights as a gate)")

    def _op(self, label: str, rule, view, *inputs: Tensor) -> Tensor:
        call = LayerCall(f"{self.name}.{label}", label, rule, view, level=self.session.options.get("record", "sums"),
                         quiet=type(getattr(view, "module", None)) in DETERMINISTIC)
        self.session.calls.append(call)
        return LRPFunction.apply(call, *inputs)

    def _project(self, part: str, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self._op(part, self.linear[part], DenseView(Affine(weight, bias)), x)

    def __call__(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                 need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                 is_causal: bool = False):
        m = self.module
        batched = query.dim() == 3
        if not batched:
            query, key, value = query[None], key[None], value[None]
            key_padding_mask = None if key_padding_mask is None else key_padding_mask[None]
        elif not m.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, target, _ = query.shape
        source, heads = key.shape[1], m.num_heads
        if m._qkv_same_embed_dim:
            weights = m.in_proj_weight.chunk(3)
        else:
            weights = (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight)
        biases = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None, None, None)
        q, k, v = (self._project(part, x, w, b).view(batch, -1, heads, m.head_dim).transpose(1, 2)
                   for part, x, w, b in zip(("q_proj", "k_proj", "v_proj"), (query, key, value), weights, biases,
                                            strict=True))
        mask = _additive_mask(attn_mask, key_padding_mask, batch, heads, target, source, q.dtype)
        options = {"attn_mask": mask, "is_causal": is_causal and mask is None, "scale": None}
        view = AttentionView(options)
        out = self._op("attention", self.contraction, view, q, k, v)
        out = out.transpose(1, 2).reshape(batch, target, m.embed_dim)
        out = self._project("out_proj", out, m.out_proj.weight, m.out_proj.bias)
        weights_out = None
        if need_weights:
            with torch.no_grad():
                weights_out = view._attention_weights(q.detach(), k.detach())
                if average_attn_weights:
                    weights_out = weights_out.mean(1)
            if not batched:
                weights_out = weights_out[0]
        if not batched:
            out = out[0]
        elif not m.batch_first:
            out = out.transpose(0, 1)
        return out, weights_out


def _additive_mask(attn_mask, key_padding_mask, batch, heads, target, source, dtype) -> Tensor | None:
    """``nn.MultiheadAttention``'s masks (True = masked out, or additive floats) as one additive mask
    broadcastable to ``(batch, heads, target, source)``."""
    mask = None
    if attn_mask is not None:
        mask = F._canonical_mask(attn_mask, "attn_mask", None, "", dtype, check_other=False)
        mask = mask.view(batch, heads, target, source) if mask.dim() == 3 else mask
    if key_padding_mask is not None:
        padding = F._canonical_mask(key_padding_mask, "key_padding_mask", None, "", dtype, check_other=False)
        padding = padding.view(batch, 1, 1, source)
        mask = padding if mask is None else mask + padding
    return mask


def attention_handler(session: Session, name: str, module: nn.MultiheadAttention) -> Callable:
    return MultiheadAttentionForward(session, name, module)
