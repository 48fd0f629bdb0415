"""The ops the recurrent families share, each an :class:`~seqlrp.core.function.LRPFunction` with a rule.

The linear recurrence with input-dependent coefficients (Mamba's selective scan, RG-LRU, RWKV's WKV,
xLSTM's memories)::

    h_t = a_t ⊙ h_{t-1} + d_t          d_t = b_t ⊙ x_t (the drive)

is unrolled as ``Sum(Product(a_t, h_{t-1}), d_t)``: the decay ``a_t`` is a gate (computed from detached inputs,
signal-takes-all: it receives nothing), the sum takes the composite's sum rule (ε). The rules are the ones the
LSTM cell uses (:func:`seqlrp.lstm.recurrent.cell_rules`: the composite's ``Product`` / ``Sum`` rules or the
special keys), so one gate rule object serves every recurrent family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..core.ops import Contraction, ContractionView, Product, ProductView, Sum, SumView
from ..core.rules.base import Rule
from ..core.rules.epsilon import Epsilon
from ..core.rules.half_product import HalfProduct
from ..core.rules.passthrough import Pass
from ..core.session import Session
from ..core.views import ElementwiseView
from ..lstm.cells import _Op
from ..lstm.recurrent import cell_rules

#: composite key: the rule of a product of two signals (Mamba's ``y ⊙ SiLU(z)``); default the half rule
OUTPUT_GATE = "<recurrent output gate>"

# (probes: the composite's rule for these types)
_CONTRACTION, _SILU, _LAYER_NORM = Contraction(), nn.SiLU(), nn.LayerNorm.__new__(nn.LayerNorm)


class SignalProductView(ProductView):
    """``a ⊙ b`` with both factors signals (no silent input): the view the half rule works on."""

    silent = ()


@dataclass
class RecurrentRules:
    """The rules of the ops inside a recurrent block."""

    sum: Rule
    product: Rule
    contraction: Rule
    activation: Rule
    output_gate: Rule
    norm: Rule

    @classmethod
    def of(cls, session: Session) -> RecurrentRules:
        composite = session.composite
        cell = cell_rules(session, None)  # (the LSTM's: the same gate-rule object)
        contraction = composite.by_type(_CONTRACTION) or Epsilon()
        activation = composite.by_type(_SILU) or Pass()
        norm = composite.by_type(_LAYER_NORM) or Epsilon()
        return cls(cell.sum, cell.product, contraction, activation, composite.get(OUTPUT_GATE) or HalfProduct(), norm)


class Ops:
    """The wrapped ops of one recurrent block (names prefixed by the block's), logging into the session."""

    def __init__(self, name: str, rules: RecurrentRules, calls: list | None):
        self.rules = rules
        self.product = _Op(f"{name}.product", ProductView(Product()), rules.product, calls)
        self.sum = _Op(f"{name}.sum", SumView(Sum()), rules.sum, calls)
        self.silu = _Op(f"{name}.silu", ElementwiseView(nn.SiLU()), rules.activation, calls)
        self._name, self._calls = name, calls

    def contract(self, fn, label: str, gate: Tensor, signal: Tensor) -> Tensor:
        """``fn(gate, signal)``, linear in the signal: the composite's contraction rule (ε), none to the gate."""
        return _Op(f"{self._name}.{label}", ContractionView(Contraction(fn)), self.rules.contraction,
                   self._calls)(gate, signal)

    def gate_product(self, gate_input: Tensor, signal: Tensor, activation: nn.Module) -> Tensor:
        """``activation(gate_input) ⊙ signal`` where ``gate_input`` carries signal too (Mamba's ``y ⊙ SiLU(z)``).

        With the half rule (MambaLRP, the default of :data:`OUTPUT_GATE`) both factors get half and the activation
        takes its rule (pass); with signal-takes-all the activation runs on the detached input and gets nothing.
        """
        rule = self.rules.output_gate
        if rule.name == "signal_takes_all":
            return self.product(activation(gate_input.detach()), signal)
        act = _Op(f"{self._name}.{type(activation).__name__.lower()}", ElementwiseView(activation),
                  self.rules.activation, self._calls)
        gate = _Op(f"{self._name}.output_gate", SignalProductView(Product()), rule, self._calls)
        return gate(act(gate_input), signal)

    def recurrence(self, decay: Tensor, drive: Tensor, start: Tensor | None = None, dim: int = 1) -> Tensor:
        """States of ``h_t = decay_t ⊙ h_{t-1} + drive_t`` along ``dim``, from ``h_{-1} = 0`` (decay: a gate).

        ``start`` (bool, ``(B, T)``): where a sequence's first real token is (left padding); the state there is
        the drive alone, as without the padding (the zero state before it is not a summand: exact invariance).
        """
        h = None
        states = []
        for t in range(drive.shape[dim]):
            d = drive.select(dim, t)
            if h is not None:
                new = self.sum(self.product(decay.select(dim, t), h), d)
                h = new if start is None else torch.where(_expand(start[:, t], d), d, new)
            else:
                h = d
            states.append(h)
        return torch.stack(states, dim)


def _expand(mask: Tensor, like: Tensor) -> Tensor:
    return mask.reshape(mask.shape + (1,) * (like.dim() - mask.dim()))


def sequence_starts(mask: Tensor | None) -> Tensor | None:
    """``(B, T)`` bool: the first real token of each left-padded sequence (None without a mask)."""
    if mask is None:
        return None
    mask = mask.bool()
    before = torch.nn.functional.pad(mask[:, :-1], (1, 0), value=False)
    return mask & ~before


def where_mask(mask: Tensor | None, x: Tensor) -> Tensor:
    """``x`` with the padded positions (``mask`` False, shape ``(B, T)``) set to 0: a routing op (no rule needed)."""
    if mask is None:
        return x
    shape = mask.shape + (1,) * (x.dim() - mask.dim())
    return torch.where(mask.reshape(shape).bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
