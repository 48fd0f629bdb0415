r"""xLSTM (Hugging Face ``xLSTMModel``: mLSTM blocks, the xLSTM-7B architecture) as wrapped ops.

mLSTM layer, per head, for ``x (B, T, H)`` (Beck et al. 2024; the transformers recurrent kernel)::

    q, k, v, õ = q(x), k(x), v(x), ogate_preact(x)               linear rule (q, k: only for the gate below)
    ĩ, f̃       = softcap(igate(x)), softcap(fgate(x))            gates
    C_t = f_t C_{t−1} + i_t k_t v_tᵀ,  n_t = f_t n_{t−1} + i_t k_t   (exponential gates, stabilizer m_t)
    h_t = C_tᵀ q_t/√d / (max(|n_tᵀ q_t/√d|, e^{−m_t}) + eps)
        = Σ_{i≤t} α_{t,i} v_i                                    α: a gate (from the detached q, k, ĩ, f̃);
                                                                 the contraction takes ε
    out = out_proj(σ(õ) ⊙ MultiHeadLayerNorm(h))                 LayerNorm per head (σ constant): ε;
                                                                 σ(õ): signal-takes-all; linear rule

with :math:`\alpha_{t,i} = e^{F_t - F_i + \tilde\imath_i - m_t}\, q_t^\top k_i / \sqrt d \,/\, \mathrm{den}_t`,
``F_t`` the cumulative log-sigmoid forget gates: the telescoped products of the stabilized exponential gates.
The value ``v`` is the signal; keys, queries, gates, normalizer and stabilizer are gates (CP-LRP's view of
linear attention). The feed-forward ``down(SiLU(up_gate(x)) ⊙ up(x))`` takes the output-gate rule (half).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.xlstm import modeling_xlstm as hf

from ..core.function import LayerCall, LRPFunction
from ..core.norms import NormView
from ..core.session import NoRuleError, Session
from ..core.views import DETERMINISTIC
from .norms import register_norm
from .ops import Ops, RecurrentRules


class HeadLayerNormView(NormView):
    """``xLSTMMultiHeadLayerNorm`` on ``(B, T, NH, DH)``: a LayerNorm per head, γ and β of shape ``(NH, DH)``."""

    def mean(self, t: Tensor) -> Tensor:
        return t.mean(-1, keepdim=True)

    def group_size(self, x: Tensor) -> int:
        return x.shape[-1]

    def eps(self, x: Tensor) -> float:
        return float(self.module.eps)

    def weight_term(self, x: Tensor) -> Tensor | float:
        w = self.module.weight
        return 1.0 if w is None else w.to(x.dtype).view(self.module.num_heads, -1)

    def bias_shape(self, bias: Tensor, out: Tensor) -> Tensor:
        return bias.to(out.dtype).view(self.module.num_heads, -1)

    def forward(self, x: Tensor) -> Tensor:
        centered = x - self.mean(x)
        y = centered * self.scale(x)
        return y if self.module.bias is None else y + self.bias_term(y)


def mlstm_weights(q: Tensor, k: Tensor, i_pre: Tensor, f_pre: Tensor, eps: float) -> Tensor:
    """``α[b, h, t, i]``: the mLSTM's read-out weights (zero for ``i > t``), from detached inputs."""
    steps = q.shape[2]
    f_log = F.logsigmoid(f_pre)  # (B, NH, T)
    cum = f_log.cumsum(-1)
    m, ms = torch.zeros_like(f_log[..., 0]), []
    for t in range(steps):  # the stabilizer, as the recurrent kernel computes it (m_{-1} = 0)
        m = torch.maximum(f_log[..., t] + m, i_pre[..., t])
        ms.append(m)
    m = torch.stack(ms, -1)
    log_w = cum[..., :, None] - cum[..., None, :] + i_pre[..., None, :] - m[..., :, None]  # (B, NH, T, T)
    future = torch.ones(steps, steps, dtype=torch.bool, device=q.device).triu(1)
    w = torch.exp(log_w.masked_fill(future, float("-inf")))
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5 * w
    denominator = torch.maximum(scores.sum(-1).abs(), torch.exp(-m)) + eps
    return scores / denominator[..., None]


def _read(alpha: Tensor, v: Tensor) -> Tensor:
    return alpha @ v


class MLSTMForward:
    """The replacement forward of an ``xLSTMLayer`` copy (returns ``(out, state)`` like it)."""

    def __init__(self, session: Session, name: str, module: nn.Module):
        if module.config.weight_mode != "single":
            raise NoRuleError(f"{name!r}: xLSTM with weight_mode={module.config.weight_mode!r} is not covered "
                              "(supported: weight_mode='single')")
        self.session, self.name, self.module = session, name, module
        self.rules = RecurrentRules.of(session)
        session.assigned[name] = (f"mLSTM: read-out {self.rules.contraction!r}, output gate {self.rules.product!r} "
                                  "[closed form]")

    def __call__(self, x: Tensor, state=None):
        if state is not None:
            raise NoRuleError(f"{self.name!r}: an mLSTM with a recurrent state (use_cache=True) cannot be explained "
                              "(past tokens' relevance would be lost); call the model with use_cache=False")
        with torch._C.DisableTorchFunction():
            return self._forward(x), None

    def _projections(self, x: Tensor):
        m, cfg = self.module, self.module.config
        xd = x.detach()
        q, k, o = (F.linear(xd, lin.weight, lin.bias) for lin in (m.q, m.k, m.ogate_preact))
        i_pre = hf.soft_cap(F.linear(xd, m.igate_preact.weight, m.igate_preact.bias), cfg.gate_soft_cap)
        f_pre = hf.soft_cap(F.linear(xd, m.fgate_preact.weight, m.fgate_preact.bias), cfg.gate_soft_cap)
        return q, k, m.v(x), o, i_pre, f_pre

    def _forward(self, x: Tensor) -> Tensor:
        m, cfg = self.module, self.module.config
        ops = Ops(self.name, self.rules, self.session.calls)
        batch, steps, _ = x.shape
        heads = cfg.num_heads
        q, k, v, o_pre, i_pre, f_pre = self._projections(x)

        def split(t):
            return t.reshape(batch, steps, heads, -1).transpose(1, 2)

        alpha = mlstm_weights(split(q), split(k), i_pre.transpose(1, 2), f_pre.transpose(1, 2), cfg.eps)
        h = ops.contract(_read, "readout", alpha, split(v)).transpose(1, 2)  # (B, T, NH, DH)
        norm = m.multihead_norm
        call = LayerCall(f"{self.name}.multihead_norm", type(norm).__name__, self.rules.norm, HeadLayerNormView(norm),
                         quiet=True)
        self.session.calls.append(call)
        self.session.assigned.setdefault(call.name, f"{call.module_type}: {self.rules.norm!r}")
        h = LRPFunction.apply(call, h).reshape(batch, steps, -1)
        return m.out_proj(ops.product(torch.sigmoid(o_pre), h))


class FeedForwardForward:
    """``down(SiLU(up_gate(x)) ⊙ up(x))``: the two-signal product takes the output-gate rule."""

    def __init__(self, session: Session, name: str, module: nn.Module):
        self.session, self.name, self.module = session, name, module
        self.rules = RecurrentRules.of(session)

    def __call__(self, x: Tensor) -> Tensor:
        m = self.module
        with torch._C.DisableTorchFunction():
            ops = Ops(self.name, self.rules, self.session.calls)
            if m.config.weight_mode != "single":
                raise NoRuleError(f"{self.name!r}: xLSTM with weight_mode={m.config.weight_mode!r} is not covered "
                                  "(supported: weight_mode='single')")
            gate, up = m.proj_up_gate(x), m.proj_up(x)
            return m.proj_down(ops.gate_product(gate, up, nn.SiLU()))


def _mlstm_handler(session: Session, name: str, module: nn.Module) -> Callable:
    return MLSTMForward(session, name, module)


def _ffn_handler(session: Session, name: str, module: nn.Module) -> Callable:
    return FeedForwardForward(session, name, module)


register_norm(hf.xLSTMRMSNorm)
DETERMINISTIC.add(hf.xLSTMMultiHeadLayerNorm)


#: module class -> handler (registered by :func:`seqlrp.recurrent.register_families`)
HANDLERS: dict = {
    hf.xLSTMLayer: _mlstm_handler,
    hf.xLSTMFeedForward: _ffn_handler,
}
