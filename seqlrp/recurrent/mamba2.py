r"""Mamba2 (Hugging Face ``Mamba2Mixer``): the state-space dual (SSD) form as a gated contraction.

One mixer, for ``x (B, T, H)`` (Dao & Gu 2024; the transformers torch path), per head ``h`` (``P`` channels)::

    [z ; xBC ; Δ̃] = in_proj(x)                                 linear rule (Δ̃: only for the gates)
    [u ; B ; C]   = SiLU(conv1d(xBC)[:T])                      causal depthwise conv: ε; SiLU: pass (u);
                                                               B, C: gates (from the detached conv output)
    Δ_t = clamp(softplus(Δ̃_t + b_Δ))                           gate
    y_t = Σ_{i≤t} α_{t,i} u_i + D ⊙ u_t,   α_{t,i} = e^{A Σ_{j=i+1..t} Δ_j} (C_tᵀB_i) Δ_i
                                                               α: a gate, the contraction: ε;
                                                               D ⊙ u: signal-takes-all; the sum: ε
    out = out_proj(RMSNorm_grouped(y ⊙ SiLU(z)))               output gate: half rule; grouped RMSNorm: identity

(the closed form of the recurrence ``h_t = e^{A Δ_t} h_{t−1} + Δ_t B_t u_tᵀ``, ``y_t = h_t C_t``, which the chunked
SSD algorithm computes blockwise).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer, Mamba2RMSNorm, Mamba2RMSNormGated

from ..core.function import LayerCall, LRPFunction
from ..core.session import Session
from ..core.views import DETERMINISTIC
from .mamba import MixerForward
from .norms import FamilyRMSNormView, register_norm
from .ops import Ops, where_mask


class GroupedRMSNormView(FamilyRMSNormView):
    """``Mamba2RMSNormGated`` after its gate: an RMSNorm over groups of ``group_size`` channels."""

    def mean(self, t: Tensor) -> Tensor:
        size = self.module.group_size
        grouped = t.reshape(*t.shape[:-1], t.shape[-1] // size, size)
        return grouped.mean(-1, keepdim=True).expand_as(grouped).reshape(t.shape)

    def group_size(self, x: Tensor) -> int:
        return self.module.group_size


def ssd_weights(dt: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """``α[b, h, t, i]`` (zero for ``i > t``) from the gates ``Δ (B, T, NH)``, ``A (NH,)``, ``B, C (B, T, NH, N)``."""
    steps = dt.shape[1]
    log_decay = (dt * a).transpose(1, 2).cumsum(-1)  # (B, NH, T)
    future = torch.ones(steps, steps, dtype=torch.bool, device=dt.device).triu(1)
    decay = torch.exp((log_decay[..., :, None] - log_decay[..., None, :]).masked_fill(future, float("-inf")))
    scores = torch.einsum("bthn,bihn->bhti", c, b)
    return decay * scores * dt.transpose(1, 2)[..., None, :]


def _read(alpha: Tensor, u: Tensor) -> Tensor:
    return alpha @ u


class Mamba2Forward(MixerForward):
    """The replacement forward of a ``Mamba2Mixer`` copy: the scan as one gated contraction (closed form)."""

    def describe(self) -> str:
        return (f"read-out {self.rules.contraction!r}, gate {self.rules.product!r}, output gate "
                f"{self.rules.output_gate!r} [closed form]")

    def _forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        m, ops = self.module, Ops(self.name, self.rules, self.session.calls)
        batch, steps, _ = x.shape
        heads, p, groups, n = m.num_heads, m.head_dim, m.n_groups, m.ssm_state_size
        z, xbc, dt = m.in_proj(where_mask(mask, x)).split([m.intermediate_size, m.conv_dim, heads], dim=-1)
        conv = m.conv1d(xbc.transpose(1, 2))[..., :steps].transpose(1, 2)
        u = where_mask(mask, ops.silu(conv[..., :m.intermediate_size]))
        gates = where_mask(mask, F.silu(conv[..., m.intermediate_size:].detach()))
        b, c = (t.reshape(batch, steps, groups, n).repeat_interleave(heads // groups, dim=2)
                for t in gates.split(groups * n, dim=-1))
        low, high = m.time_step_limit
        delta = torch.clamp(F.softplus(dt.detach() + m.dt_bias.to(x.dtype)), low, high)
        alpha = ssd_weights(delta, -torch.exp(m.A_log.to(x.dtype)), b, c)
        heads_u = u.reshape(batch, steps, heads, p).transpose(1, 2)  # (B, NH, T, P)
        y = ops.contract(_read, "readout", alpha, heads_u).transpose(1, 2)  # (B, T, NH, P)
        skip = ops.product(m.D.to(x.dtype)[:, None].expand(heads, p).expand_as(y), u.reshape(batch, steps, heads, p))
        y = ops.sum(y, skip).reshape(batch, steps, -1)
        gated = ops.gate_product(z, y, nn.SiLU())
        call = LayerCall(f"{self.name}.norm", type(m.norm).__name__, self.rules.norm, GroupedRMSNormView(m.norm),
                         quiet=True)
        self.session.calls.append(call)
        self.session.assigned.setdefault(call.name, f"{call.module_type}: {self.rules.norm!r}")
        return m.out_proj(LRPFunction.apply(call, gated))


def _mamba2_handler(session: Session, name: str, module: nn.Module) -> Callable:
    return Mamba2Forward(session, name, module)


register_norm(Mamba2RMSNorm)
DETERMINISTIC.add(Mamba2RMSNormGated)


#: module class -> handler (registered by :func:`seqlrp.recurrent.register_families`)
HANDLERS: dict = {
    Mamba2Mixer: _mamba2_handler,
}
