r"""RWKV (v4, Hugging Face ``RwkvModel``): time mixing and channel mixing as wrapped ops.

Time mixing, for ``x (B, T, H)`` (Peng et al. 2023; the transformers CPU path)::

    x'_t = μ ⊙ x_t + (1 − μ) ⊙ x_{t−1}              token shift: ε over the two summands (μ constants)
    k, v = key(x'_k), value(x'_v)                  linear rule (k: only to build the gate below)
    r    = σ(receptance(x'_r))                     gate
    wkv_t = Σ_{i≤t} α_{t,i} ⊙ v_i                  α_{t,i} ∝ exp((t−1−i) w + k_i) (i < t), exp(u + k_t) (i = t),
                                                   normalized over i: a gate (from the detached k);
                                                   the contraction takes ε (R_{v_i} = α_{t,i} v_i / stab(wkv_t) R_t)
    out  = output(r ⊙ wkv)                         signal-takes-all; linear rule

The contraction is the closed form of the WKV recurrence ``S_t = e^{w} S_{t−1} + e^{k_t} v_t`` read out through
its normalizer: with the gates held constant, ε over the unrolled sums gives each ``v_i`` the same share at ε = 0.
Channel mixing: ``σ(receptance(x'_r)) ⊙ value(ReLU(key(x'_k))²)``: the receptance a gate, the squared ReLU an
activation (pass).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.rwkv.modeling_rwkv import RwkvFeedForward, RwkvModel, RwkvSelfAttention

from ..core.session import NoRuleError, Session
from ..core.views import ElementwiseView
from ..lstm.cells import _Op
from .ops import Ops, RecurrentRules


class SquaredReLU(nn.Module):
    """``ReLU(x)²``, RWKV's channel-mixing activation (an element-wise activation: the pass rule)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.square(torch.relu(x))


def _refuse_state(name: str, state) -> None:
    if state is not None:
        raise NoRuleError(f"{name!r}: RWKV with a recurrent state (use_cache=True or a passed state) cannot be "
                          "explained (past tokens' relevance would be lost); call the model with use_cache=False")


def token_shift(ops: Ops, mix: Tensor, x: Tensor) -> Tensor:
    """``μ ⊙ x_t + (1 − μ) ⊙ x_{t−1}`` (zero before the first token): ε over the two summands."""
    shifted = F.pad(x, (0, 0, 1, -1))
    mu = mix.to(x.dtype)
    return ops.sum(ops.product(mu.expand_as(x), x), ops.product((1 - mu).expand_as(x), shifted))


def shift_mixed(mix: Tensor, x: Tensor) -> Tensor:
    """The token shift of the detached ``x``, for a gate (no relevance)."""
    x = x.detach()
    mu = mix.to(x.dtype)
    return x * mu + F.pad(x, (0, 0, 1, -1)) * (1 - mu)


def wkv_weights(time_decay: Tensor, time_first: Tensor, key: Tensor) -> Tensor:
    """``α[b, c, t, i]``: the normalized WKV weights (a gate), from the detached keys; zero for ``i > t``.

    ``logits[b, c, t, i] = k[b, i, c] + D[c, t, i]`` with ``D = (t − 1 − i) w`` below the diagonal, ``u`` on it and
    ``−∞`` above (built once, ``(C, T, T)``), softmax over ``i``: one broadcast add and one softmax over the
    contiguous last axis of the large tensor, laid out for :func:`_mix` without a copy.
    """
    steps = key.shape[1]
    w = -torch.exp(time_decay.to(key.dtype))
    t = torch.arange(steps, device=key.device)
    lag = (t[:, None] - 1 - t[None, :]).to(key.dtype)  # (T, T): t − 1 − i
    offsets = lag[None, :, :] * w[:, None, None]  # (C, T, T)
    eye = torch.eye(steps, dtype=torch.bool, device=key.device)
    offsets = torch.where(eye, time_first.to(key.dtype)[:, None, None], offsets)
    offsets = offsets.masked_fill(t[None, :] > t[:, None], float("-inf"))
    return torch.softmax(key.transpose(1, 2)[:, :, None, :] + offsets, dim=-1)


def _mix(alpha: Tensor, value: Tensor) -> Tensor:
    return torch.einsum("bcti,bic->btc", alpha, value)


class TimeMixForward:
    """The replacement forward of an ``RwkvSelfAttention`` copy (returns ``(out, state)``)."""

    def __init__(self, session: Session, name: str, module: RwkvSelfAttention):
        self.session, self.name, self.module = session, name, module
        self.rules = RecurrentRules.of(session)
        session.assigned[name] = (f"RWKV time mixing: wkv {self.rules.contraction!r}, receptance "
                                  f"{self.rules.product!r} [closed form]")

    def __call__(self, hidden: Tensor, state=None, use_cache: bool = False):
        _refuse_state(self.name, state)
        m = self.module
        with torch._C.DisableTorchFunction():
            ops = Ops(self.name, self.rules, self.session.calls)
            key = F.linear(shift_mixed(m.time_mix_key, hidden), m.key.weight.to(hidden.dtype))  # (gate only)
            value = m.value(token_shift(ops, m.time_mix_value, hidden))
            receptance = torch.sigmoid(F.linear(shift_mixed(m.time_mix_receptance, hidden), m.receptance.weight))
            alpha = wkv_weights(m.time_decay, m.time_first, key)
            wkv = ops.contract(_mix, "wkv", alpha, value)
            return m.output(ops.product(receptance, wkv)), None


class ChannelMixForward:
    """The replacement forward of an ``RwkvFeedForward`` copy (returns ``(out, state)``)."""

    def __init__(self, session: Session, name: str, module: RwkvFeedForward):
        self.session, self.name, self.module = session, name, module
        self.rules = RecurrentRules.of(session)

    def __call__(self, hidden: Tensor, state=None):
        _refuse_state(self.name, state)
        m = self.module
        with torch._C.DisableTorchFunction():
            ops = Ops(self.name, self.rules, self.session.calls)
            square = _Op(f"{self.name}.squared_relu", ElementwiseView(SquaredReLU()), self.rules.activation,
                         self.session.calls)
            value = m.value(square(m.key(token_shift(ops, m.time_mix_key, hidden))))
            receptance = torch.sigmoid(F.linear(shift_mixed(m.time_mix_receptance, hidden), m.receptance.weight))
            return ops.product(receptance, value), None


def check_rescaled(model: nn.Module) -> None:
    """transformers divides RWKV's output weights in place on the first eval-mode forward (``rescale_every``): an
    explanation would do it to the user's weights (shared storage). Refused until the model has run once."""
    for name, module in model.named_modules():
        if isinstance(module, RwkvModel) and not module.layers_are_rescaled and module.config.rescale_every > 0 \
                and module.config.num_hidden_layers > module.config.rescale_every:
            raise NoRuleError(f"{name or type(model).__name__!r}: RWKV rescales its weights in place on its first "
                              "eval-mode forward; run the model once (in eval mode) before explaining it")


def _time_mix_handler(session: Session, name: str, module: nn.Module) -> Callable:
    return TimeMixForward(session, name, module)


def _channel_mix_handler(session: Session, name: str, module: nn.Module) -> Callable:
    return ChannelMixForward(session, name, module)


#: module class -> handler (registered by :func:`seqlrp.recurrent.register_families`)
HANDLERS: dict = {
    RwkvSelfAttention: _time_mix_handler,
    RwkvFeedForward: _channel_mix_handler,
}
