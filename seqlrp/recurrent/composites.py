"""Preset composites for the recurrent families (Mamba, ...): which rule goes to which op."""

from __future__ import annotations

import importlib

from torch import nn

from ..core import groups
from ..core.composites import Composite, layer_rules
from ..core.rules.base import Rule
from ..core.session import register_handler
from .norms import FAMILY_NORMS
from .ops import OUTPUT_GATE

#: the family modules whose import registers their handlers and views (they import transformers)
FAMILIES = ("mamba", "mamba2", "recurrent_gemma", "rwkv", "xlstm")


def register_families() -> None:
    """Import the family handlers (needs transformers): their mixers and norms get views and rules."""
    for family in FAMILIES:
        module = importlib.import_module(f"{__package__}.{family}")
        for module_class, handler in module.HANDLERS.items():
            register_handler(module_class)(handler)  # (idempotent: a dict entry)


class RecurrentLRP(Composite):
    """LRP for the recurrent families: ε on affine layers, convolutions, sums, read-outs and norms (the norm's
    scale held constant: identity), signal-takes-all on gated products (the LSTM's gate rule), pass on
    activations, and ``output_gate`` on a product of two signals (``y ⊙ SiLU(z)``).

    Parameters
    ----------
    epsilon : float
        The ε of every stabilized rule (default 1e-6).
    output_gate : {"signal_takes_all", "half_product"}
        The rule of a product of two signals (Mamba's ``y ⊙ SiLU(z)``, the gated MLPs ``act(a) ⊙ b``):
        signal-takes-all with the activated branch as the gate (default: on the toy task it ranks the two
        marked tokens on top 2.6-2.7x as often as the half rule for Mamba, Mamba2 and RecurrentGemma, and
        ties it for xLSTM; docs/results.md), or MambaLRP's half rule (each factor gets half).
    """

    default_output_gate = "signal_takes_all"
    #: the name reported in ``result.coverage``
    preset = "RecurrentLRP"

    def __init__(self, epsilon: float = 1e-6, output_gate: str | None = None):
        output_gate = output_gate or self.default_output_gate
        if output_gate not in ("half_product", "signal_takes_all"):
            raise ValueError(f"output_gate must be 'half_product' or 'signal_takes_all', got {output_gate!r}")
        eps = ("epsilon", {"epsilon": epsilon})
        super().__init__({
            OUTPUT_GATE: (output_gate, {"epsilon": epsilon}) if output_gate == "half_product" else output_gate,
            **layer_rules(eps),
        })
        self._norm: Rule = self._rules[groups.NORMS]
        self._options = {"epsilon": epsilon, "output_gate": output_gate}

    def __repr__(self) -> str:
        """The preset and its options (``coverage.rules["<composite>"]``), e.g. ``RecurrentLRP(epsilon=1e-06,
        output_gate='signal_takes_all')``."""
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._options.items())})"

    def by_type(self, module: nn.Module) -> Rule | None:
        rule = super().by_type(module)
        if rule is None and isinstance(module, tuple(FAMILY_NORMS)):
            return self._norm
        return rule

    def canonize(self, model: nn.Module) -> nn.Module:
        register_families()
        from .rwkv import check_rescaled

        check_rescaled(model)
        return model


class MambaLRP(RecurrentLRP):
    """MambaLRP (Jafari et al. 2024) on Hugging Face Mamba models: SiLU as identity (pass), the selective
    scan's Δ, Ā, B̄, C as constants (gates), the half rule on ``y ⊙ SiLU(z)`` (the paper's; ``output_gate=
    "signal_takes_all"`` for :class:`RecurrentLRP`'s default), RMSNorm's scale held constant; ε on the linear
    maps and sums (see docs/recurrent.md). Same parameters as :class:`RecurrentLRP`."""

    default_output_gate = "half_product"
    preset = "MambaLRP"
