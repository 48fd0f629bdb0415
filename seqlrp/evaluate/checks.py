"""Argument checks of the evaluation functions: every failure names its cause and its fix."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..core.checks import check_eval_mode


def check_model(model: nn.Module | Callable) -> None:
    """A callable; an ``nn.Module`` must be in eval mode where its output depends on the mode."""
    if not callable(model):
        raise TypeError(f"model must be an nn.Module or a callable returning logits (B, C), got {type(model).__name__}")
    if isinstance(model, nn.Module):
        check_eval_mode(model)


def check_count(name: str, value: int, minimum: int = 1) -> int:
    """An ``int`` (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def check_finite(tensor: Tensor, what: str) -> Tensor:
    """A real-valued tensor without NaN or Inf."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"{what} must hold real numbers, got dtype {tensor.dtype}")
    if tensor.is_floating_point():
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            nan = int(torch.isnan(tensor).sum())
            raise ValueError(f"{what} contains {nan} NaN and {int((~finite).sum()) - nan} infinite values, which "
                             "have no order and no share: fix their source (for relevance e.g. a larger epsilon) "
                             "or clean them (torch.nan_to_num) first")
    return tensor


def exact_dtype(device: torch.device) -> torch.dtype:
    """float64 for sums and shares, except on Apple's MPS, which has none (float32 there)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def channel_sum(relevance: Tensor, batch: int, spatial: Sequence[int], what: str = "relevance") -> Tensor:
    """Relevance per position ``(B, *spatial)``: given as ``(B, *spatial)`` or ``(B, C, *spatial)`` (summed over C)."""
    check_finite(relevance, what)
    spatial = tuple(spatial)
    if relevance.shape == (batch, *spatial):
        return relevance
    if relevance.dim() == len(spatial) + 2 and relevance.shape[0] == batch and tuple(relevance.shape[2:]) == spatial:
        return relevance.sum(1)
    expected = ", ".join(str(s) for s in spatial)
    raise ValueError(f"{what} has shape {tuple(relevance.shape)}; expected ({batch}, {expected}) or "
                     f"({batch}, C, {expected}) to match the inputs")


__all__ = ["channel_sum", "check_choice", "check_count", "check_finite", "check_fraction", "check_model", "exact_dtype"]
