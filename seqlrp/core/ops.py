"""Modules for value-mixing ops that models usually write functionally: sums and gated products.

Making them modules gives them views, so rules can be attached: the CNN side uses :class:`Sum` for
residual connections, the LSTM side uses both for the cell.
"""

from __future__ import annotations

from torch import Tensor, nn

from .views import View, register_view


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
    """``Product()(gate, signal) = gate * signal``: a gate in [0, 1] times a signal (LSTM/GRU)."""

    def forward(self, gate: Tensor, signal: Tensor) -> Tensor:
        return gate * signal


class SumView(View):
    """View of :class:`Sum`: a linear map with unit weights from each summand."""

    kind = "sum"

    def output_nonnegative(self, inputs_nonnegative):
        return all(inputs_nonnegative)


class ProductView(View):
    """View of :class:`Product`: ``(gate, signal) -> gate * signal``."""

    kind = "product"


register_view(Sum)(SumView)
register_view(Product)(ProductView)


def per_sample_total(t: Tensor) -> Tensor:
    """Sum over every dimension but the first, kept broadcastable: shape ``(B, 1, ..., 1)``."""
    return t.reshape(t.shape[0], -1).sum(1).view(-1, *([1] * (t.dim() - 1)))


__all__ = ["Product", "ProductView", "Sum", "SumView", "per_sample_total"]
