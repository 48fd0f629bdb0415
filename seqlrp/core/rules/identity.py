"""The identity rule for normalizations and element-wise maps (AttnLRP, Achtibat et al. 2024, Prop. 3.4)."""

from __future__ import annotations

from .passthrough import Pass


class Identity(Pass):
    r"""Identity: :math:`R_x = R_y` for a one-to-one map (an element-wise activation such as GELU or SiLU,
    the normalization of an RMSNorm: :math:`y_i = \gamma_i x_i / \mathrm{rms}(x)`).

    AttnLRP's justification: the scale :math:`1/\mathrm{rms}(x)` (or :math:`1/\sigma`) is shared by the
    whole group, so each output is its own input, rescaled; the rescaling is not a mixing of values. On a
    LayerNorm, whose centring *does* mix values, the presets use ε with σ held constant instead (identity on
    the scaling, ε on the centring, as LXT does).

    On a sum of one signal and constants (an attention mask added to the scores before a softmax:
    :math:`x + M`, :math:`M` 0 where attended, very negative elsewhere) the signal keeps all the relevance.
    """

    name = "identity"
    kinds = frozenset({"elementwise", "norm", "sum"})

    def applies_to(self, view) -> bool:
        # on a sum: only a signal plus constants (an attention mask added to the scores), all to the signal
        return view.kind in self.kinds and (view.kind != "sum" or sum(not c for c in view.constants) == 1)

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        if view.kind == "sum":
            return tuple(None if constant else _fit(relevance, x) for constant, x in zip(view.constants, inputs,
                                                                                         strict=True))
        (x,) = inputs
        return (_fit(relevance, x),)


def _fit(relevance, x):
    return relevance if relevance.shape == x.shape else relevance.sum_to_size(x.shape)
