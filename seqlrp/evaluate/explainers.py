"""Named explainers for comparisons: ``explain(model, inputs, target) -> relevance``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

ExplainerFunction = Callable[[nn.Module, Tensor, Tensor], Tensor]
#: a function, or the relevance tensor itself (to reuse one explanation in several comparisons)
Explainer = ExplainerFunction | Tensor


def random_explainer(seed: int = 0) -> ExplainerFunction:
    """Uniform random relevance in [-0.5, 0.5): the baseline every explainer must beat."""

    def explain(model, inputs, target):
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(inputs.shape, generator=generator).to(inputs.device) - 0.5

    return explain


def image_explainers(low: float | Tensor = 0.0, high: float | Tensor = 1.0,
                     epsilon: float = 0.25) -> dict[str, ExplainerFunction]:
    """The comparison set for CNNs: the LRP presets and the baselines, by name.

    ``low``/``high`` are the input box of EpsilonGammaBox's zB rule, ``epsilon`` is EpsilonOnly's ε.
    "gradient" is the signed input gradient, "sensitivity (gradient²)" its square (≥ 0, per channel;
    summed over channels by the metrics: the squared gradient norm per pixel).
    """
    from .. import baselines
    from ..cnn import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonOnly, EpsilonPlusFlat
    from ..core import explain

    def lrp(composite):
        return lambda m, x, t: explain(m, x, t, composite).relevance

    return {
        "LRP EpsilonPlusFlat": lrp(EpsilonPlusFlat()),
        "LRP EpsilonGammaBox": lrp(EpsilonGammaBox(low, high)),
        "LRP EpsilonAlpha2Beta1": lrp(EpsilonAlpha2Beta1()),
        f"LRP ε={epsilon:g}": lrp(EpsilonOnly(epsilon)),
        "gradient": lambda m, x, t: baselines.gradient(m, x, t).relevance,
        "sensitivity (gradient²)": lambda m, x, t: baselines.gradient(m, x, t).relevance ** 2,
        "gradient x input": lambda m, x, t: baselines.gradient_x_input(m, x, t).relevance,
        "guided backprop": lambda m, x, t: baselines.guided_backprop(m, x, t).relevance,
        "random": random_explainer(),
    }


__all__ = ["Explainer", "ExplainerFunction", "image_explainers", "random_explainer"]
