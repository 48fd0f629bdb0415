"""Composite presets for CNNs. They canonize the model inside ``explain``, afresh on every call.

| preset | first layer | convolutions | dense layers |
|---|---|---|---|
| :class:`EpsilonOnly` | ε | ε | ε |
| :class:`EpsilonPlusFlat` | flat | z⁺ | ε |
| :class:`EpsilonPlus` | z⁺ | z⁺ | ε |
| :class:`EpsilonAlpha2Beta1` | α2β1 | α2β1 | ε |
| :class:`EpsilonGammaBox` | zB(low, high) | γ | ε |
| :class:`GammaSchedule` | zB(low, high) | γ decreasing with depth | LRP-0 |

All: pass on activations, winner-takes-all on max pools, ε (stabilizer) on average pools, residual
sums (:class:`~seqlrp.core.ops.Sum`, also a functional ``+``), gate-weighted contractions and
normalization layers (LayerNorm with its scale held constant), signal-takes-all on gated products
(squeeze-excitation: the sigmoid branch gets nothing), ``active_pass`` on :class:`ThreshReLU`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..core import groups
from ..core.composites import FIRST, Composite
from ..core.copying import record_outputs, structural_copy
from ..core.ops import Contraction, Product, Sum
from ..core.rules.base import Rule, check_number
from .canonize import canonize
from .canonizer import Canonizer, check_canonizers
from .canonizers import DEFAULT_CANONIZERS
from .layers import ChannelAffine, ThreshReLU


def bounds_from_normalization(mean: Sequence[float], std: Sequence[float], low: float = 0.0,
                              high: float = 1.0) -> tuple[Tensor, Tensor]:
    """The box of normalized pixels: ``((low - mean) / std, (high - mean) / std)``, shaped ``(1, C, 1, 1)``.

    >>> low, high = bounds_from_normalization([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])  # ImageNet
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    if mean_t.numel() != std_t.numel():
        raise ValueError(f"bounds_from_normalization: mean has {mean_t.numel()} channels, std {std_t.numel()}")
    if not bool(torch.isfinite(mean_t).all() and torch.isfinite(std_t).all()):
        raise ValueError("bounds_from_normalization: mean and std must be finite")
    if bool((std_t <= 0).any()):
        raise ValueError("bounds_from_normalization: std must be positive")
    low = check_number("bounds_from_normalization", "low", low)
    high = check_number("bounds_from_normalization", "high", high)
    if not low < high:
        raise ValueError(f"bounds_from_normalization: low must be < high, got low={low}, high={high}")
    return (low - mean_t) / std_t, (high - mean_t) / std_t


class CNNComposite(Composite):
    """A composite that canonizes the model first (see :func:`seqlrp.cnn.canonize`)."""

    def __init__(self, conv: Rule | str | tuple, dense: Rule | str | tuple, first=None, epsilon: float = 1e-6,
                 extra: dict | None = None, canonizers: Sequence[Canonizer] | None = None):
        #: the canonization patterns, in order (:mod:`seqlrp.cnn.canonizers`; a user's canonizer is added here)
        self.canonizers = DEFAULT_CANONIZERS if canonizers is None else check_canonizers(canonizers)
        stabilizer = ("epsilon", {"epsilon": epsilon})
        rules = dict(extra or {})
        if first is not None:
            rules[FIRST] = first
        rules.update({
            ThreshReLU: "active_pass",
            ChannelAffine: stabilizer,
            Sum: stabilizer,
            Contraction: stabilizer,
            Product: "signal_takes_all",
            groups.NORMS: stabilizer,
            groups.CONVOLUTIONS: conv,
            groups.DENSE: dense,
            groups.AVG_POOLS: stabilizer,
            groups.MAX_POOLS: "winner_takes_all",
            groups.ACTIVATIONS: "pass",
        })
        super().__init__(rules)

    def canonize(self, model: nn.Module) -> nn.Module:
        # afresh on every call (never cached): an explanation can never describe a stale model. Unverified
        # here (the presets' canonization is tested on every torchvision family); ~2% of explain on resnet50
        return canonize(model, verify=False, canonizers=self.canonizers)


class EpsilonOnly(CNNComposite):
    """ε on every convolution (the first too) and dense layer: LRP-ε on the canonized model.

    ``epsilon`` is absolute, in the units of the pre-activations (Montavon et al. 2019 suggest about
    0.25 of their standard deviation; a canonized batch-normalized network has roughly unit-variance
    pre-activations). With ``epsilon`` → 0 this is LRP-0, which equals gradient × input on a ReLU
    network: ε only damps the weak and contradictory contributions.
    """

    def __init__(self, epsilon: float = 0.25, stabilizer: float = 1e-6, canonizers: Sequence[Canonizer] | None = None):
        rule = ("epsilon", {"epsilon": epsilon})
        super().__init__(rule, rule, epsilon=stabilizer, canonizers=canonizers)


class EpsilonPlusFlat(CNNComposite):
    """Flat on the first layer, z⁺ on convolutions, ε on dense layers (zennit's EpsilonPlusFlat)."""

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, canonizers: Sequence[Canonizer] | None = None):
        super().__init__(("zplus", {"epsilon": stabilizer}), ("epsilon", {"epsilon": epsilon}),
                         first=("flat", {"epsilon": stabilizer}), epsilon=stabilizer, canonizers=canonizers)


class EpsilonPlus(CNNComposite):
    """z⁺ on convolutions (the first too), ε on dense layers."""

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, canonizers: Sequence[Canonizer] | None = None):
        super().__init__(("zplus", {"epsilon": stabilizer}), ("epsilon", {"epsilon": epsilon}), epsilon=stabilizer,
                         canonizers=canonizers)


class EpsilonAlpha2Beta1(CNNComposite):
    """α2β1 on convolutions, ε on dense layers."""

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, canonizers: Sequence[Canonizer] | None = None):
        super().__init__(("alpha_beta", {"alpha": 2.0, "beta": 1.0, "epsilon": stabilizer}),
                         ("epsilon", {"epsilon": epsilon}), epsilon=stabilizer, canonizers=canonizers)


class EpsilonGammaBox(CNNComposite):
    """zB(low, high) on the first layer, γ on convolutions, ε on dense layers (zennit's EpsilonGammaBox)."""

    def __init__(self, low: float | Tensor = -3.0, high: float | Tensor = 3.0, epsilon: float = 1e-6,
                 gamma: float = 0.25, stabilizer: float = 1e-6, canonizers: Sequence[Canonizer] | None = None):
        super().__init__(("gamma", {"gamma": gamma, "epsilon": stabilizer}), ("epsilon", {"epsilon": epsilon}),
                         first=("zbox", {"low": low, "high": high, "epsilon": stabilizer}), epsilon=stabilizer,
                         canonizers=canonizers)


class GammaSchedule(CNNComposite):
    r"""zB first, γ decreasing with depth on convolutions, LRP-0 on dense layers.

    The classic VGG-16 recipe (Montavon et al. 2019) uses γ = 1, 10^-0.5, 10^-1, 10^-1.5, 10^-2 over
    its five conv blocks. Generalized: a conv's *stage* is the number of spatial downsamplings
    before it (found by one probe forward of the canonized model), and with ``S`` stages stage ``s``
    gets :math:`\gamma_s = \gamma_{first} (\gamma_{last}/\gamma_{first})^{s/(S-1)}` -- exactly the
    recipe for VGG-16.
    """

    def __init__(self, low: float | Tensor = -3.0, high: float | Tensor = 3.0, gamma_first: float = 1.0,
                 gamma_last: float = 1e-2, stabilizer: float = 1e-6, probe_size: int = 64,
                 canonizers: Sequence[Canonizer] | None = None):
        self.low, self.high, self.stabilizer = low, high, stabilizer
        owner = "GammaSchedule"
        self.gamma_first = check_number(owner, "gamma_first", gamma_first, minimum=0.0)
        self.gamma_last = check_number(owner, "gamma_last", gamma_last, minimum=0.0)
        if self.gamma_first == 0 or self.gamma_last == 0:
            raise ValueError(f"GammaSchedule: gamma_first and gamma_last must be > 0 (a geometric schedule), got "
                             f"{gamma_first} and {gamma_last}")
        if isinstance(probe_size, bool) or not isinstance(probe_size, int) or probe_size < 1:
            raise ValueError(f"GammaSchedule: probe_size must be a positive int, got {probe_size!r}")
        self.probe_size = probe_size
        super().__init__(("gamma", {"gamma": gamma_first, "epsilon": stabilizer}), ("zero", {}),
                         first=("zbox", {"low": low, "high": high, "epsilon": stabilizer}), epsilon=stabilizer,
                         canonizers=canonizers)

    def stages(self, model: nn.Module) -> dict[str, int]:
        """Stage (number of downsamplings before it) of every convolution, by qualified name."""
        work = structural_copy(model)
        sizes = record_outputs(work, select=lambda name, module: isinstance(module, groups.CONVOLUTIONS),
                               value=lambda inputs, output: int(math.prod(inputs[0].shape[2:])))
        first = next(m for m in model.modules() if isinstance(m, groups.CONVOLUTIONS))
        dtype = first.weight.dtype
        probe = torch.zeros(1, first.in_channels, *([self.probe_size] * (first.weight.dim() - 2)), dtype=dtype,
                            device=first.weight.device)
        with torch.no_grad():
            work(probe)
        distinct = sorted(set(sizes.values()), reverse=True)
        return {name: distinct.index(size) for name, size in sizes.items()}

    def gammas(self, model: nn.Module) -> dict[str, float]:
        stages = self.stages(model)
        last = max(stages.values(), default=0)
        ratio = self.gamma_last / self.gamma_first
        return {name: self.gamma_first * (ratio ** (s / last) if last else 1.0) for name, s in stages.items()}

    def bind(self, model: nn.Module) -> Composite:
        """A composite with one γ rule per convolution name of ``model`` (the canonized model).

        The first convolution the input meets keeps the zB rule (``FIRST``).
        """
        gammas = self.gammas(model)  # in execution order
        rules = {name: ("gamma", {"gamma": g, "epsilon": self.stabilizer}) for name, g in list(gammas.items())[1:]}
        rules.update(self._rules)
        bound = Composite(rules)
        return bound
