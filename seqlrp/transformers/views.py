"""Views of the Hugging Face layers that are not ``torch.nn`` layers: GPT-2's ``Conv1D`` (a linear layer with its
weight stored transposed) and the models' own RMSNorm classes (``LlamaRMSNorm``, ``Qwen2RMSNorm``, ...).

Registered when a preset meets them in a model (:meth:`~seqlrp.transformers.composites.TransformerComposite.bind`):
nothing here imports ``transformers``; classes are recognized by their module and attributes.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..core.function import LayerCall, LRPFunction
from ..core.norms import NormView
from ..core.session import NoRuleError, Session, register_handler
from ..core.views import DETERMINISTIC, DenseView, ElementwiseView, register_view, view_of


class Conv1DView(DenseView):
    """``transformers.pytorch_utils.Conv1D``: ``x W + b`` with ``W`` of shape ``(in, out)``: an ``nn.Linear`` with
    weight ``Wᵀ``."""

    @property
    def weight(self) -> Tensor:
        return self.module.weight.t()


class HFRMSNormView(NormView):
    r"""A Hugging Face RMSNorm: :math:`y = \gamma \odot x / \sqrt{\mathrm{mean}(x^2) + \epsilon}` over the last
    dimension (not centred)."""

    center = False

    def mean(self, t):
        return t.mean(-1, keepdim=True)

    def group_size(self, x):
        return x.shape[-1]

    def eps(self, x):
        return float(getattr(self.module, "variance_epsilon", getattr(self.module, "eps", 1e-6)))


class GemmaRMSNormView(HFRMSNormView):
    r"""Gemma's RMSNorm (``GemmaRMSNorm``, ``Gemma2RMSNorm``, ``Gemma3RMSNorm``, ...): the weight is stored as an
    offset from 1, :math:`y = x / \sqrt{\mathrm{mean}(x^2) + \epsilon} \odot (1 + w)`."""

    def weight_term(self, x):
        return 1.0 + self.module.weight


def _one_plus_weight(cls: type) -> bool:
    """Whether a Hugging Face RMSNorm class scales by ``1 + weight`` (Gemma's families)."""
    return "Gemma" in cls.__name__


#: activation classes given :func:`_activation_forward`
_HANDLED: set[type] = set()


def _activation_forward(session: Session, name: str, module: nn.Module):
    """A ``transformers.activations`` module as one element-wise layer with the composite's rule for it, or left to
    its own torch ops (None) when the composite has none: a handler, not a view, so composites that do not name
    these classes behave as if they were never seen."""
    rule = session.composite.by_name(name) or session.composite.by_type(module)
    if rule is None:
        return None
    view = ElementwiseView(module)
    if not rule.applies_to(view):
        raise NoRuleError(f"rule {rule!r} does not apply to the activation {name!r} ({type(module).__name__})")
    session.assigned[name] = f"{type(module).__name__}: {rule!r}"
    level = session.options.get("record", "sums")

    def forward(x: Tensor) -> Tensor:
        call = LayerCall(name, type(module).__name__, rule, view, level=level, quiet=True)
        session.calls.append(call)
        return LRPFunction.apply(call, x)

    return forward


def _is_hf(cls: type) -> bool:
    return cls.__module__.startswith("transformers.")


def hf_rmsnorm_classes(model: nn.Module) -> tuple[type, ...]:
    """The RMSNorm classes of ``model`` written by Hugging Face (name ``*RMSNorm``, a 1-D ``weight``, an epsilon),
    the ``(1 + weight)`` variants (Gemma's) included."""
    found = []
    for m in model.modules():
        cls = type(m)
        if cls in found or not _is_hf(cls) or not cls.__name__.endswith("RMSNorm"):
            continue
        weight = getattr(m, "weight", None)
        if isinstance(weight, Tensor) and weight.dim() == 1 and (hasattr(m, "variance_epsilon") or hasattr(m, "eps")):
            found.append(cls)
    return tuple(found)


def hf_activation_classes(model: nn.Module) -> tuple[type, ...]:
    """The element-wise activation modules of ``model`` from ``transformers.activations`` (``NewGELUActivation``,
    ``GELUActivation``, ...) that have no parameters: written with several torch ops, they are one activation."""
    return tuple({type(m) for m in model.modules() if type(m).__module__ == "transformers.activations"
                  and next(m.parameters(), None) is None})


def register_hf_views(model: nn.Module) -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """Register views for the Hugging Face layers of ``model`` (idempotent); returns its ``Conv1D``, RMSNorm and
    activation classes."""
    activations = hf_activation_classes(model)
    for cls in activations:
        if cls not in _HANDLED:
            _HANDLED.add(cls)
            register_handler(cls)(_activation_forward)
    dense = tuple({type(m) for m in model.modules() if type(m).__name__ == "Conv1D" and _is_hf(type(m))})
    for cls in dense:
        if not isinstance(view_of(cls.__new__(cls)), Conv1DView):
            register_view(cls)(Conv1DView)
            DETERMINISTIC.add(cls)
    norms = hf_rmsnorm_classes(model)
    for cls in norms:
        existing = view_of(cls.__new__(cls))
        if _one_plus_weight(cls):  # (a family's own view of it, e.g. RecurrentGemma's, is kept)
            if existing is None:
                register_view(cls)(GemmaRMSNormView)
                DETERMINISTIC.add(cls)
        elif not isinstance(existing, HFRMSNormView):
            register_view(cls)(HFRMSNormView)
            DETERMINISTIC.add(cls)
    return dense, norms, activations
