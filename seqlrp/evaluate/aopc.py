"""AOPC (Samek et al. 2017): area over the perturbation curve, with confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from .checks import check_finite


def aopc(curves: Tensor) -> Tensor:
    r"""Per-sample AOPC of perturbation curves ``(B, L + 1)`` (column 0 = the unperturbed score):

    .. math:: \mathrm{AOPC} = \frac{1}{L + 1} \sum_{k=0}^{L} \big(f(x^{(0)}) - f(x^{(k)})\big)

    High for most-relevant-first (MoRF) orders of a good explanation, low (or negative) for
    least-relevant-first (LeRF).
    """
    check_finite(curves, "curves")
    if curves.dim() != 2 or curves.shape[1] < 2 or curves.shape[0] == 0:
        raise ValueError(f"curves must be (B, L + 1) with B >= 1 and L >= 1, got {tuple(curves.shape)}")
    return (curves[:, :1] - curves).mean(1)


@dataclass
class Summary:
    """Mean of per-sample values with a normal-approximation 95% confidence interval."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}] (n={self.n})"


def summarize(values: Tensor, z: float = 1.959963984540054) -> Summary:
    """Mean and normal 95% CI (``mean ± z s / sqrt(n)``, ``s`` the sample standard deviation) of ``values``."""
    values = check_finite(values, "values").detach().double().flatten()
    n = values.numel()
    if n == 0:
        raise ValueError("cannot summarize an empty tensor of values")
    mean = float(values.mean())
    half = z * float(values.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return Summary(mean, mean - half, mean + half, n)


def lerf_morf_gap(lerf_curves: Tensor, morf_curves: Tensor) -> Tensor:
    """Per-sample ``AOPC(MoRF) - AOPC(LeRF)`` (the curves' area between them; larger is better)."""
    return aopc(morf_curves) - aopc(lerf_curves)


__all__ = ["Summary", "aopc", "lerf_morf_gap", "summarize"]
