"""Baselines with the same call signature as :func:`seqlrp.explain`: gradient, gradient x input,
guided backprop."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from .core.composites import Composite
from .core.copying import structural_copy
from .core.explain import prepare
from .core.explanation import Explanation
from .core.pipeline import propagate
from .core.rules.base import Rule
from .core.session import Session


def gradient(model: nn.Module, inputs: Tensor, target: int | Tensor | Callable | None = None, *,
             seed: str | Callable = "one") -> Explanation:
    r"""Sensitivity: :math:`\partial f_c / \partial x` (``seed="one"``)."""
    return propagate(structural_copy(prepare(model, inputs)), inputs, target, seed, mode="gradient")


def gradient_x_input(model: nn.Module, inputs: Tensor, target: int | Tensor | Callable | None = None, *,
                     seed: str | Callable = "one") -> Explanation:
    r"""Gradient x Input: :math:`x \odot \partial f_c / \partial x`."""
    return propagate(structural_copy(prepare(model, inputs)), inputs, target, seed, mode="gradient_x_input")


class GuidedReLU(Rule):
    r"""Guided backprop at a ReLU: :math:`g_{in} = \max(g_{out}, 0) \odot [x > 0]`."""

    name = "guided_relu"
    kinds = frozenset({"elementwise"})

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        (x,) = inputs
        return (relevance.clamp(min=0) * (x > 0).to(relevance.dtype),)


class _GuidedComposite(Composite):
    strict = False


def guided_backprop(model: nn.Module, inputs: Tensor, target: int | Tensor | Callable | None = None, *,
                    seed: str | Callable = "one") -> Explanation:
    """Guided backpropagation (Springenberg et al. 2015): the gradient with ReLU modules guided.

    Only ``nn.ReLU`` modules are guided; functional ReLUs keep their gradient.
    """
    session = Session(_GuidedComposite({nn.ReLU: GuidedReLU()}))
    return propagate(session.wrap(prepare(model, inputs)), inputs, target, seed, session, warn_coverage=False)


from .lstm.text import text_gradient, text_gradient_x_input  # noqa: E402  (text baselines, same signature)

__all__ = ["gradient", "gradient_x_input", "guided_backprop", "text_gradient", "text_gradient_x_input"]
