r"""Mamba (Hugging Face ``MambaMixer``): the selective scan unrolled as wrapped ops (MambaLRP's rules).

One mixer, for ``x (B, T, H)`` (Gu & Dao 2023; the transformers slow path)::

    [x_s ; z] = in_proj(x)                                   linear rule (ε)
    u         = SiLU(conv1d(x_s)[:T])                        depthwise causal conv: ε; SiLU: pass (identity)
    Δ, B, C   = softplus(dt_proj(..) + b), x_proj(u)         computed from the detached u: gates
    Ā_t = exp(Δ_t A),  B̄_t = Δ_t B_t                         gates
    h_t = Ā_t ⊙ h_{t-1} + B̄_t ⊙ u_t                          Product: signal-takes-all; Sum: ε
    y_t = h_t C_t + D ⊙ u_t                                  Contraction (gate C): ε; D ⊙ u: signal-takes-all; Sum: ε
    out = out_proj(y ⊙ SiLU(z))                              output gate: half rule (MambaLRP); linear rule

Importing this module registers the handler and the view of ``MambaRMSNorm`` (the presets in
:mod:`seqlrp.recurrent` do it for you).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.mamba.modeling_mamba import MambaMixer, MambaRMSNorm

from ..core.session import NoRuleError, Session
from .norms import register_norm
from .ops import Ops, RecurrentRules, sequence_starts, where_mask


def refuse_cache(name: str, cache, layer: int) -> None:
    """A cache holding past states would make the explanation depend on tokens it does not see: refused."""
    if cache is None:
        return
    try:
        past = cache.get_seq_length(layer)
    except (AttributeError, TypeError, IndexError, KeyError):
        past = 0
    if past:
        raise NoRuleError(f"{name!r}: a cache with {past} past tokens cannot be explained (their relevance would be "
                          "lost); explain the whole sequence with use_cache=False")


class MixerForward(abc.ABC):
    """The replacement ``forward(hidden_states, cache=None, attention_mask=None)`` of a mixer copy: the rules of the
    session, a cache refused, the mixer's own ops computed with the functional rules off (:meth:`_forward`)."""

    def __init__(self, session: Session, name: str, module: nn.Module):
        self.session, self.name, self.module = session, name, module
        self.rules = RecurrentRules.of(session)
        session.assigned[name] = f"{type(module).__name__}: {self.describe()}"

    @abc.abstractmethod
    def describe(self) -> str:
        """Which rule goes where, for the coverage report."""

    def __call__(self, hidden_states: Tensor, cache=None, attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        refuse_cache(self.name, cache, self.module.layer_idx)
        with torch._C.DisableTorchFunction():
            return self._forward(hidden_states, attention_mask)

    @abc.abstractmethod
    def _forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """The mixer's output, computed with the session's rules."""


class MambaForward(MixerForward):
    """The replacement forward of a ``MambaMixer`` copy: the selective scan unrolled as wrapped ops."""

    def describe(self) -> str:
        return (f"sum {self.rules.sum!r}, gate {self.rules.product!r}, C {self.rules.contraction!r}, output gate "
                f"{self.rules.output_gate!r} [unrolled]")

    def _forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        m, ops = self.module, Ops(self.name, self.rules, self.session.calls)
        steps = x.shape[1]
        xz = m.in_proj(where_mask(mask, x))  # (B, T, 2D)
        xs, z = xz.chunk(2, dim=-1)
        conv = m.conv1d(xs.transpose(1, 2))[..., :steps].transpose(1, 2)  # (B, T, D): causal (left padding)
        u = where_mask(mask, ops.silu(conv))
        dt, b, c = _selection(m, u.detach())  # the gates: (B, T, D), (B, T, N), (B, T, N)
        a = -torch.exp(m.A_log.to(u.dtype))  # (D, N)
        decay = torch.exp(dt[..., None] * a)  # Ā: (B, T, D, N)
        drive = ops.product(dt[..., None] * b[:, :, None, :], u[..., None])  # B̄ ⊙ u
        states = ops.recurrence(decay, drive, sequence_starts(mask))  # (B, T, D, N)
        y = ops.contract(_read_out, "readout", c, states)  # h_t C_t: (B, T, D)
        y = ops.sum(y, ops.product(m.D.to(u.dtype).expand_as(u), u))
        return m.out_proj(ops.gate_product(z, y, nn.SiLU()))


def _selection(m: MambaMixer, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Δ, B, C from the (detached) conv output: the input-dependent coefficients (gates)."""
    n, r = m.ssm_state_size, m.time_step_rank
    p = F.linear(u, m.x_proj.weight.to(u.dtype))
    dt, b, c = torch.split(p, [r, n, n], dim=-1)
    bias = None if m.dt_proj.bias is None else m.dt_proj.bias.to(u.dtype)
    return F.softplus(F.linear(dt, m.dt_proj.weight.to(u.dtype), bias)), b, c


def _read_out(c: Tensor, states: Tensor) -> Tensor:
    """``y[b, t, d] = Σ_n h[b, t, d, n] C[b, t, n]``."""
    return (states * c[:, :, None, :]).sum(-1)


def _mamba_handler(session: Session, name: str, module: nn.Module) -> Callable:
    return MambaForward(session, name, module)


register_norm(MambaRMSNorm)


#: module class -> handler (registered by :func:`seqlrp.recurrent.register_families`)
HANDLERS: dict = {
    MambaMixer: _mamba_handler,
}
