r"""Products of two signals and the softmax: the ops AttnLRP gives rules to (Achtibat et al., ICML 2024).

In a transformer, values mix in three ways an affine layer does not cover:

* products of two signals -- the attention scores :math:`Q K^\top`, the attention output :math:`A V`
  and a gated MLP :math:`u \odot \mathrm{act}(v)` (SwiGLU, GeGLU). :class:`SignalProduct` is their module
  twin (the composite key) and :class:`BilinearView` their view: ``fn(a, b)`` linear in each operand when
  the other is held constant (kind ``"bilinear"``; both operands receive relevance, neither is silent).
* the softmax :math:`s = \mathrm{softmax}(x)`: :class:`SoftmaxView` (kind ``"softmax"``, composite key
  ``nn.Softmax``), for ``F.softmax`` / ``torch.softmax`` / ``Tensor.softmax`` and ``nn.Softmax`` called
  in a model's forward (through :mod:`seqlrp.core.functional`).

The rules are :class:`~seqlrp.core.rules.uniform.Uniform` (each operand half, ε-stabilized) and
:class:`~seqlrp.core.rules.softmax.SoftmaxTaylor` (:math:`R_x = x \odot (R_s - s \odot \sum_j R_{s_j})`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .views import View


def _multiply(a: Tensor, b: Tensor) -> Tensor:
    return a * b


class SignalProduct(nn.Module):
    """``SignalProduct(fn)(a, b) = fn(a, b)`` for two signals, ``fn`` bilinear (``a * b`` by default, ``torch.matmul``,
    a two-operand einsum). The composite key of the rule for products of two signals."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor] = _multiply):
        super().__init__()
        self.fn = fn

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.fn(a, b)


class BilinearView(View):
    r"""View of a bilinear op ``y = fn(a, b)``: its two partial transposes.

    :meth:`vjp` returns :math:`(\partial_a [y \cdot g],\ \partial_b [y \cdot g])`, each with the other operand
    held constant -- for ``a @ b``: :math:`(g b^\top, a^\top g)`; for ``a * b``: :math:`(g b, g a)` (summed
    over broadcast dimensions).
    """

    kind = "bilinear"
    #: ``a * b`` (the default ``fn``)
    MULTIPLY = staticmethod(_multiply)

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], label: str = "product"):
        super().__init__(None)
        self.fn, self.label = fn, label

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.fn(a, b)

    def vjp(self, a: Tensor, b: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
        if self.fn is torch.matmul and a.dim() >= 2 and b.dim() >= 2:
            ga, gb = grad @ b.transpose(-2, -1), a.transpose(-2, -1) @ grad
            return _sum_to(ga, a), _sum_to(gb, b)
        if self.fn is _multiply:
            return _sum_to(grad * b, a), _sum_to(grad * a, b)
        with torch.enable_grad():
            x, y = a.detach().requires_grad_(True), b.detach().requires_grad_(True)
            ga, gb = torch.autograd.grad(self.fn(x, y), (x, y), grad)
        return ga, gb


def _sum_to(t: Tensor, like: Tensor) -> Tensor:
    return t if t.shape == like.shape else t.sum_to_size(like.shape)


class SoftmaxView(View):
    """View of ``softmax(x, dim)`` (``dtype``: the dtype it computes in, as ``F.softmax``'s argument)."""

    kind = "softmax"
    gate = "softmax"

    def __init__(self, dim: int, dtype: torch.dtype | None = None):
        super().__init__(None)
        self.dim, self.dtype = dim, dtype

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, self.dim, dtype=self.dtype)

    def output_nonnegative(self, inputs_nonnegative):
        return True


__all__ = ["BilinearView", "SignalProduct", "SoftmaxView"]
