"""Modules for value-mixing ops that models usually write functionally: sums, gated products and
gate-weighted contractions (attention).

Making them modules gives them views, so rules can be attached: the CNN side uses :class:`Sum` for
residual connections, the LSTM side uses :class:`Sum` and :class:`Product` for the cell, and the same
ops written functionally in any model (``x + f(x)``, ``x * sigmoid(...)``, ``softmax(a) @ h``) get the
same views and rules during an explanation (:mod:`seqlrp.core.functional`). The module types are
the composite keys of these rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .views import View


class Sum(nn.Module):
    """``Sum()(a, b, ...) = a + b + ...`` (same shapes). Relevance: ε over the summands.

    Parameters
    ----------
    dense_share : bool
        How Arras's ``bias_factor`` spreads the ε share: ``False`` (default) gives unit ``k``'s
        share to the summands' unit ``k`` only; ``True`` treats each summand as an identity
        matrix over all ``d`` units of a sample (Arras et al. 2017's LSTM cell), so the share of
        unit ``k`` goes to every unit of every summand.
    """

    def __init__(self, dense_share: bool = False):
        super().__init__()
        self.dense_share = dense_share

    def forward(self, *inputs: Tensor) -> Tensor:
        total = inputs[0]
        for term in inputs[1:]:
            total = total + term
        return total


class Product(nn.Module):
    """``Product()(gate, signal) = gate * signal``: a gate (sigmoid, hardsigmoid, softmax) times a signal
    (LSTM/GRU gates, squeeze-excitation, gated linear units)."""

    def forward(self, gate: Tensor, signal: Tensor) -> Tensor:
        return gate * signal


class Contraction(nn.Module):
    """``Contraction(fn)(gate, signal) = fn(gate, signal)``, linear in the signal: a gate-weighted sum such
    as attention pooling ``softmax(a) @ h`` (``fn`` = ``torch.matmul`` by default, or an einsum)."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor] = torch.matmul):
        super().__init__()
        self.fn = fn

    def forward(self, gate: Tensor, signal: Tensor) -> Tensor:
        return self.fn(gate, signal)


class Affine(nn.Module):
    """``x W^T + b`` with given tensors (not parameters): a linear map inside a composite layer (an LSTM cell,
    an attention's projections)."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.weight, self.bias)


class SumView(View):
    """View of :class:`Sum`: a linear map with unit weights (±1) from each summand.

    ``signs`` gives each summand's sign (``a - b``: ``(1, -1)``); summands flagged in ``constants`` are
    biases (no relevance is sent to them). Summands may broadcast against each other.
    """

    kind = "sum"

    def __init__(self, module: nn.Module, signs: Sequence[int] | None = None, constants: Sequence[bool] = ()):
        super().__init__(module)
        self.signs, self.constants = signs, tuple(constants)

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.signs is None:
            return super().forward(*inputs)
        total = inputs[0] if self.signs[0] > 0 else -inputs[0]
        for sign, term in zip(self.signs[1:], inputs[1:], strict=True):
            total = total + term if sign > 0 else total - term
        return total

    def summands(self, inputs: Sequence[Tensor]) -> list[Tensor | None]:
        """Each summand as it enters the sum (the sign applied), None for a constant (a bias)."""
        signs = self.signs or (1,) * len(inputs)
        return [None if i < len(self.constants) and self.constants[i] else (a if sign > 0 else -a)
                for i, (sign, a) in enumerate(zip(signs, inputs, strict=True))]

    def output_nonnegative(self, inputs_nonnegative):
        return all(inputs_nonnegative) and not any(s < 0 for s in self.signs or ())


class ProductView(View):
    """View of :class:`Product`: ``(gate, signal) -> gate * signal``."""

    kind = "product"
    #: which inputs are the gate (they receive no relevance)
    silent = (0,)

    def output_nonnegative(self, inputs_nonnegative):
        # a non-negative gate (sigmoid, softmax) times a non-negative signal (squeeze-excitation after a ReLU)
        return len(inputs_nonnegative) == 2 and all(inputs_nonnegative)


class ContractionView(View):
    """View of :class:`Contraction`: ``(gate, signal) -> fn(gate, signal)``, linear in the signal."""

    kind = "contraction"
    silent = (0,)

    def signal_vjp(self, inputs: Sequence[Tensor], grad: Tensor) -> tuple[int, Tensor]:
        r"""``(index, g)``: the signal's position and :math:`\partial/\partial s\,[f(gate, s)\cdot grad]`
        with the gate held fixed (the transpose of the linear map ``s -> fn(gate, s)``)."""
        gate, signal = inputs
        with torch.enable_grad():
            s = signal.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.module.fn(gate.detach(), s), s, grad)
        return 1, g

    def support(self, inputs: Sequence[Tensor]) -> tuple[ContractionView, list[Tensor]]:
        """This map with the gate replaced by its non-zero pattern (for the ε share, see the ε rule)."""
        gate, signal = inputs
        return self, [(gate != 0).to(signal.dtype), signal]

    def signal_apply(self, inputs: Sequence[Tensor]) -> Tensor:
        """``fn(gate, signal)``: the map applied to ``inputs``."""
        return self.module.fn(*inputs)




def per_sample_total(t: Tensor) -> Tensor:
    """Sum over every dimension but the first, kept broadcastable: shape ``(B, 1, ..., 1)`` (a new tensor).

    Summed in place over the non-batch dimensions: a ``reshape(B, -1)`` would copy a non-contiguous (permuted,
    channels-last) tensor first.
    """
    if t.dim() > 1:
        return t.sum(tuple(range(1, t.dim())), keepdim=True)
    return t.clone()


__all__ = ["Affine", "Contraction", "ContractionView", "Product", "ProductView", "Sum", "SumView", "per_sample_total"]
