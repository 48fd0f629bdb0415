"""The identity rule for normalizations and element-wise maps (AttnLRP, Achtibat et al. 2024, Prop. 3.4)."""

from __future__ import annotations

from ..registry import register
from .passthrough import Pass


@register("identity")
class Identity(Pass):
    r"""Identity: :math:`R_x = R_y` for a one-to-one map (an element-wise activation such as GELU or SiLU,
    the normalization of an RMSNorm: :math:`y_i = \gamma_i x_i / \mathrm{rms}(x)`).

    AttnLRP's justification: the scale :math:`1/\mathrm{rms}(x)` (or :math:`1/\sigma`) is shared by the
    whole group, so each output is its own input, rescaled; the rescaling is not a mixing of values. On a
    LayerNorm, whose centring *does* mix values, the presets use ε with σ held constant instead (identity on
    the scaling, ε on the centring, as LXT does).
    """

    kinds = frozenset({"elementwise", "norm"})

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        (x,) = inputs
        return (relevance if relevance.shape == x.shape else relevance.sum_to_size(x.shape),)
