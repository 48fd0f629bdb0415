"""The transformer presets: AttnLRP (Achtibat et al., ICML 2024) and CP-LRP (Ali et al., ICML 2022).

Both are composites over the one registry; which rule goes where:

=========================================  ===================================  ==================================
op                                          AttnLRP                              CP-LRP
=========================================  ===================================  ==================================
``nn.Linear``, ``Conv1D``, convolutions     ε                                    ε
residual ``+``, embedding sums, means       ε                                    ε
LayerNorm / GroupNorm                       ε with σ constant (identity on the   ε with σ constant
                                            scaling, ε on the centring)
RMSNorm (torch's and Hugging Face's)        identity                             identity
softmax                                     :class:`SoftmaxTaylor`               a gate: no relevance (constant)
``A·V`` (softmax weights times values)      uniform (half to ``A``, half to      ε to ``V``, none to ``A``
                                            ``V``)
``Q·Kᵀ`` and other products of two signals  uniform                              uniform (only gated MLPs: ``Q·Kᵀ``
                                                                                 feeds the gate, receives nothing)
gate ⊙ signal (sigmoid gates)               uniform                              signal-takes-all
GELU, SiLU, tanh, ... (element-wise)        identity                             identity
=========================================  ===================================  ==================================
"""

from __future__ import annotations

import copy

from torch import nn

from ..core import groups
from ..core.bilinear import SignalProduct
from ..core.composites import Composite, layer_rules
from ..core.ops import Contraction, Product, Sum
from ..core.registry import resolve
from .views import register_hf_views

#: attention implementations whose computation seqlrp sees op by op
EXPLAINABLE_ATTENTION = ("eager", "sdpa")


class TransformerComposite(Composite):
    """A transformer preset: registers views for the Hugging Face layers of the model it is bound to (``Conv1D``,
    RMSNorm classes) and refuses attention backends it cannot see into."""

    #: the name reported in ``result.coverage``
    preset = "transformer"

    def bind(self, model: nn.Module) -> Composite:
        check_attention_backend(model)
        dense, norms, activations = register_hf_views(model)
        if not (dense or norms or activations):
            return self
        extra = {}
        if activations:  # transformers.activations' modules: the rule of the element-wise activations
            extra[activations] = self.by_type(nn.GELU())
        if dense:  # GPT-2's Conv1D: the rule of nn.Linear
            extra[dense] = self.by_type(nn.Linear.__new__(nn.Linear))
        if norms:
            extra[norms] = self.rmsnorm
        bound = copy.copy(self)
        bound._rules = {**extra, **self._rules}
        return bound

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def check_attention_backend(model: nn.Module) -> None:
    """A ``ValueError`` naming the backend when a Hugging Face model attends through a fused kernel (flash, flex):
    its attention weights never exist as tensors, so no rule can see them."""
    for m in model.modules():
        config = getattr(m, "config", None)
        backend = getattr(config, "_attn_implementation", None)
        if backend is not None and backend not in EXPLAINABLE_ATTENTION:
            raise ValueError(
                f"attention implementation {backend!r} cannot be explained (a fused kernel: its attention weights "
                f"never exist as tensors); load the model with attn_implementation='eager' or 'sdpa'")


class AttnLRP(TransformerComposite):
    r"""AttnLRP (Achtibat et al., ICML 2024): ε on linear maps and sums, the softmax rule
    :math:`R_x = x \odot (R_s - s \odot \sum_j R_{s_j})`, the uniform rule on products of two signals
    (:math:`Q K^\top`, :math:`A V`, gated MLPs), identity on RMSNorm and element-wise activations, ε with σ
    constant on LayerNorm.

    Parameters
    ----------
    epsilon : float
        The ε of linear maps, sums, normalizations and the uniform rule (default 1e-6).
    """

    preset = "AttnLRP"

    def __init__(self, epsilon: float = 1e-6):
        self.options = {"epsilon": epsilon}
        eps = ("epsilon", {"epsilon": epsilon})
        uniform = ("uniform", {"epsilon": epsilon})
        self.rmsnorm = resolve("identity")
        super().__init__({
            _RMS_NORMS: "identity",
            groups.WEIGHTED: eps,
            groups.AVG_POOLS: eps,
            groups.NORMS: eps,
            Sum: eps,
            Product: uniform,
            Contraction: uniform,
            SignalProduct: uniform,
            nn.Softmax: "softmax",
            groups.MAX_POOLS: "winner_takes_all",
            groups.ACTIVATIONS: "identity",
        })


class CPLRP(TransformerComposite):
    r"""CP-LRP (Ali et al., ICML 2022, "XAI for Transformers: Better Explanations through Conservative
    Propagation"): the attention weights are a gate -- held constant,
    :math:`R_V = V \odot A^\top (R / \mathrm{stab}(AV))` and nothing to :math:`Q`, :math:`K` -- and
    LayerNorm's σ is constant (ε on the linearized map); ε on linear maps and sums, identity on element-wise
    activations and RMSNorm, signal-takes-all on sigmoid gates, the
    uniform rule on the products of two signals of gated MLPs (the paper has none; seqlrp's choice).

    Parameters
    ----------
    epsilon : float
        The ε of linear maps, sums, normalizations and the attention contraction (default 1e-6).
    """

    preset = "CP-LRP"

    def __init__(self, epsilon: float = 1e-6):
        self.options = {"epsilon": epsilon}
        eps = ("epsilon", {"epsilon": epsilon})
        self.rmsnorm = resolve("identity")
        super().__init__({
            _RMS_NORMS: "identity",
            SignalProduct: ("uniform", {"epsilon": epsilon}),
            **layer_rules(eps, activations="identity"),
        })


_RMS_NORMS: tuple[type, ...] = (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
