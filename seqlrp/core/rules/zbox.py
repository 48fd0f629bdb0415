"""The zB rule for input layers whose inputs lie in a box."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register
from .base import Rule


@register("zbox")
class ZBox(Rule):
    r"""LRP-zB (Montavon et al. 2017) for inputs bounded by :math:`l_j \le a_j \le h_j`.

    .. math::
        R_j = \sum_k \frac{a_j w_{jk} - l_j w_{jk}^+ - h_j w_{jk}^-}
                          {\sum_i (a_i w_{ik} - l_i w_{ik}^+ - h_i w_{ik}^-)} R_k

    The bias is left out by default (``ignore_bias=True``, as published); with
    ``ignore_bias=False`` it is added to the denominator.

    Parameters
    ----------
    low, high : float or Tensor
        Bounds, scalars or tensors broadcastable to the input (e.g. shape ``(1, 3, 1, 1)`` for
        per-channel bounds of normalized images: :func:`seqlrp.cnn.bounds_from_normalization`).
    """

    kinds = frozenset({"linear"})
    default_ignore_bias = True

    def __init__(self, low: float | Tensor = 0.0, high: float | Tensor = 1.0, epsilon: float | None = None,
                 ignore_bias: bool | None = None):
        super().__init__(epsilon, ignore_bias)
        self.low, self.high = self._bound("low", low), self._bound("high", high)
        try:
            ordered = bool((self.low < self.high).all())
        except RuntimeError:
            raise ValueError(f"rule 'zbox': low {tuple(self.low.shape)} and high {tuple(self.high.shape)} do not "
                             "broadcast to each other") from None
        if not ordered:
            raise ValueError("rule 'zbox': low must be < high everywhere (the box of the input values), got "
                             f"low={_summary(self.low)}, high={_summary(self.high)}")

    def _bound(self, parameter: str, value) -> Tensor:
        try:
            bound = torch.as_tensor(value).detach()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"rule 'zbox': {parameter} must be a number or a tensor, got {value!r}") from None
        if not (bound.is_floating_point() or bound.dtype in (torch.int32, torch.int64)) or bound.numel() == 0:
            raise TypeError(f"rule 'zbox': {parameter} must be a non-empty real number or tensor, got {value!r}")
        if not bool(torch.isfinite(bound).all()):
            raise ValueError(f"rule 'zbox': {parameter} must be finite, got {value!r}")
        return bound

    def params(self):
        def short(t):
            return t.item() if t.numel() == 1 else tuple(t.flatten().tolist())

        return {"low": short(self.low), "high": short(self.high), **super().params()}

    def __repr__(self) -> str:
        # bounds given per pixel hold ~10^5 numbers: shape, dtype and range instead (params() keeps them all)
        args = {"low": _summary(self.low), "high": _summary(self.high)}
        args.update({k: repr(v) for k, v in super().params().items()})
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in args.items())})"

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        (x,) = inputs
        w = view.weight
        try:
            low = torch.broadcast_to(self.low.to(x), x.shape)
            high = torch.broadcast_to(self.high.to(x), x.shape)
        except RuntimeError:
            raise ValueError(
                f"zbox bounds of shape {tuple(self.low.shape)}/{tuple(self.high.shape)} do not broadcast "
                f"to the input of shape {tuple(x.shape)}"
            ) from None
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        # bounds shared by all samples: the bound terms f(l; W⁺) + f(h; W⁻) computed for one sample
        shared = all(b.dim() < x.dim() or b.shape[0] == 1 for b in (self.low, self.high)) and x.shape[0] > 1
        low_one, high_one = (low[:1], high[:1]) if shared else (low, high)
        z = self._z_without_bias(view, out) - (view.apply(low_one, wp) + view.apply(high_one, wn))
        bias = self._bias(view)
        if bias is not None:
            z = z + view.bias_term(bias, out)
        s = self._divide(relevance, z)
        g, gp, gn = view.vjp_stack(s, (w, wp, wn), x)
        return (x * g - low_one * gp - high_one * gn,)


def _summary(bound: Tensor) -> str:
    """A number as itself; a tensor of a few values as their list; a larger one as shape, dtype, min and max."""
    if bound.numel() == 1:
        return repr(bound.item())
    if bound.numel() <= 8:
        return repr(tuple(bound.flatten().tolist()))
    return (f"tensor(shape={tuple(bound.shape)}, dtype={str(bound.dtype).removeprefix('torch.')}, "
            f"min={bound.min().item():.4g}, max={bound.max().item():.4g})")
