"""Preset composites for the recurrent families (Mamba, ...): which rule goes to which op."""

from __future__ import annotations

import importlib

from torch import nn

from ..core import groups
from ..core.composites import Composite
from ..core.ops import Contraction, Product, Sum
from ..core.rules.base import Rule
from .norms import FAMILY_NORMS
from .ops import OUTPUT_GATE

#: the family modules whose import registers their handlers and views (they import transformers)
FAMILIES = ("mamba", "mamba2", "recurrent_gemma", "rwkv", "xlstm")


def register_families() -> None:
    """Import the family handlers (needs transformers): their mixers and norms get views and rules."""
    for family in FAMILIES:
        importlib.import_module(f"{__package__}.{family}")


class RecurrentLRP(Composite):
    """LRP for the recurrent families: ε on affine layers, convolutions, sums, read-outs and norms (the norm's
    scale held constant: identity), signal-takes-all on gated products (the LSTM's gate rule), pass on
    activations, and ``output_gate`` on a product of two signals (``y ⊙ SiLU(z)``).

    Parameters
    ----------
    epsilon : float
        The ε of every stabilized rule (default 1e-6).
    output_gate : {"half_product", "signal_takes_all"}
        The rule of Mamba's multiplicative gate ``y ⊙ SiLU(z)``: MambaLRP's half rule (default) or
        signal-takes-all (``SiLU(z)`` as a gate).
    """

    def __init__(self, epsilon: float = 1e-6, output_gate: str = "half_product"):
        if output_gate not in ("half_product", "signal_takes_all"):
            raise ValueError(f"output_gate must be 'half_product' or 'signal_takes_all', got {output_gate!r}")
        eps = ("epsilon", {"epsilon": epsilon})
        super().__init__({
            groups.WEIGHTED: eps,
            groups.AVG_POOLS: eps,
            groups.NORMS: eps,
            Sum: eps,
            Contraction: eps,
            Product: "signal_takes_all",
            groups.ACTIVATIONS: "pass",
            OUTPUT_GATE: (output_gate, {"epsilon": epsilon}) if output_gate == "half_product" else output_gate,
        })
        self._norm: Rule = self._rules[groups.NORMS]

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
    scan's Δ, Ā, B̄, C as constants (gates), the half rule on ``y ⊙ SiLU(z)``, RMSNorm's scale held constant;
    ε on the linear maps and sums (see docs/recurrent.md). Same parameters as :class:`RecurrentLRP`."""
