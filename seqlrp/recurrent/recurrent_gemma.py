r"""RecurrentGemma / Griffin (Hugging Face): the RG-LRU unrolled as wrapped ops; the two-branch products take the
output-gate rule (half rule).

Recurrent block, for ``x (B, T, H)`` (De et al. 2024; the transformers forward)::

    y   = GELU(linear_y(x))                                    linear rule; GELU: pass
    u   = conv_1d(linear_x(x))[:T]                             linear rule; causal depthwise conv: ε
    i_t, r_t = σ(W_i u_t + b_i), σ(W_r u_t + b_r)              gates (block-diagonal, from the detached u)
    a_t = exp(−8 r_t softplus(Λ)) (0 where a sequence starts)  gate
    h_t = a_t ⊙ h_{t−1} + (√(1−a_t²) i_t) ⊙ u_t                the linear recurrence (Product: signal-takes-all; Sum: ε)
    out = linear_out(h ⊙ y)                                    two signals: the output-gate rule (half)

MLP: ``down(GELU(gate(x)) ⊙ up(x))``, the same two-signal product. ``RecurrentGemmaRMSNorm`` stores
:math:`\gamma - 1`; its view adds 1. Attention blocks (``block_types`` with ``"attention"``) need the
transformer rules (softmax): refused by the recurrent presets.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.recurrent_gemma.modeling_recurrent_gemma import (
    RecurrentGemmaAttention,
    RecurrentGemmaMlp,
    RecurrentGemmaRecurrentBlock,
    RecurrentGemmaRMSNorm,
)

from ..core.session import NoRuleError, Session
from .norms import register_norm
from .ops import Ops, RecurrentRules


class RecurrentBlockForward:
    """The replacement forward of a ``RecurrentGemmaRecurrentBlock`` copy (returns ``(out, None)`` like it)."""

    def __init__(self, session: Session, name: str, module: RecurrentGemmaRecurrentBlock):
        self.session, self.name, self.module = session, name, module
        self.rules = RecurrentRules.of(session)
        session.assigned[name] = (f"RG-LRU: sum {self.rules.sum!r}, gate {self.rules.product!r}, output gate "
                                  f"{self.rules.output_gate!r} [unrolled]")

    def __call__(self, input_states: Tensor, position_ids: Tensor, attention_mask=None, use_cache=None, **kwargs):
        cached = getattr(self.module.rg_lru, "recurrent_states", None) is not None
        if position_ids.shape[1] == 1 and input_states.shape[1] == 1 and cached:
            raise NoRuleError(f"{self.name!r}: a decoding step with a cached state cannot be explained (the past "
                              "tokens' relevance would be lost); explain the whole sequence with use_cache=False")
        with torch._C.DisableTorchFunction():
            return self._forward(input_states, position_ids), None

    def _forward(self, x: Tensor, position_ids: Tensor) -> Tensor:
        m, ops = self.module, Ops(self.name, self.rules, self.session.calls)
        steps = x.shape[1]
        y = m.linear_y(x)
        u = m.conv_1d(m.linear_x(x).transpose(1, 2))[..., :steps].transpose(1, 2)
        decay, scale = rg_lru_gates(m.rg_lru, u.detach(), position_ids)
        states = ops.recurrence(decay, ops.product(scale, u))
        return m.linear_out(ops.gate_product(y, states, m.act_fn))


def rg_lru_gates(lru: nn.Module, u: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
    """The RG-LRU's input-dependent coefficients from the (detached) conv output: ``(a_t, √(1−a_t²) i_t)``."""
    batch, steps, width = u.shape
    heads, block = lru.num_attention_heads, lru.block_width
    blocks = u.reshape(batch, steps, heads, block)

    def gate(weight, bias):
        return torch.sigmoid(torch.einsum("bthi,hij->bthj", blocks, weight.to(u.dtype)) + bias.to(u.dtype)).reshape(
            batch, steps, width)

    input_gate = gate(lru.input_gate_weight, lru.input_gate_bias)
    softplus = F.softplus(lru.recurrent_param.to(u.dtype))
    log_a = -8.0 * gate(lru.recurrent_gate_weight, lru.recurrent_gate_bias) * softplus
    reset = (position_ids == 0)[:, :, None].expand(batch, steps, 1)
    multiplier = torch.where(reset, torch.ones((), dtype=u.dtype), torch.sqrt(1 - torch.exp(2 * log_a)))
    return torch.exp(log_a) * ~reset, multiplier * input_gate


class MlpForward:
    """``down(act(gate(x)) ⊙ up(x))``: the two-signal product takes the output-gate rule."""

    def __init__(self, session: Session, name: str, module: RecurrentGemmaMlp):
        self.session, self.name, self.module = session, name, module
        self.rules = RecurrentRules.of(session)

    def __call__(self, hidden_states: Tensor) -> Tensor:
        m = self.module
        with torch._C.DisableTorchFunction():
            ops = Ops(self.name, self.rules, self.session.calls)
            return m.down_proj(ops.gate_product(m.gate_proj(hidden_states), m.up_proj(hidden_states), m.act_fn))


def _block_handler(session: Session, name: str, module: nn.Module) -> Callable:
    return RecurrentBlockForward(session, name, module)


def _mlp_handler(session: Session, name: str, module: nn.Module) -> Callable:
    return MlpForward(session, name, module)


def _attention_handler(session: Session, name: str, module: nn.Module) -> Callable | None:
    from .composites import RecurrentLRP

    if not isinstance(session.composite, RecurrentLRP):
        return None  # (a transformer composite may have the softmax rules)

    def refuse(*args, **kwargs):
        raise NoRuleError(f"{name!r}: RecurrentGemma's attention blocks need the transformer rules (softmax), which "
                          "the recurrent presets do not have; use block_types=['recurrent'] or a transformer composite")

    return refuse


register_norm(RecurrentGemmaRMSNorm, offset=True)


#: module class -> handler (registered by :func:`seqlrp.recurrent.register_families`)
HANDLERS: dict = {
    RecurrentGemmaRecurrentBlock: _block_handler,
    RecurrentGemmaMlp: _mlp_handler,
    RecurrentGemmaAttention: _attention_handler,
}
