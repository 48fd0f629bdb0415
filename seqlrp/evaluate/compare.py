"""Run several explainers on the same data and return a tidy table of AOPC values (pandas-free)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from .aopc import aopc, summarize
from .perturbation import region_perturbation, token_perturbation

Explainer = Callable[[nn.Module, Tensor, Tensor], Tensor]


def random_explainer(seed: int = 0) -> Explainer:
    """Uniform random relevance: the baseline every explainer must beat."""

    def explain(model, inputs, target):
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(inputs.shape, generator=generator).to(inputs.device) - 0.5

    return explain


def _rows(name: str, curves: dict[str, Tensor]) -> list[dict]:
    rows = []
    for order, curve in curves.items():
        summary = summarize(aopc(curve))
        rows.append({"explainer": name, "order": order, "aopc": summary.mean, "ci_low": summary.low,
                     "ci_high": summary.high, "n": summary.n})
    if "morf" in curves and "lerf" in curves:
        summary = summarize(aopc(curves["morf"]) - aopc(curves["lerf"]))
        rows.append({"explainer": name, "order": "morf-lerf gap", "aopc": summary.mean, "ci_low": summary.low,
                     "ci_high": summary.high, "n": summary.n})
    return rows


def compare_images(model: nn.Module, images: Tensor, target: Tensor, explainers: Mapping[str, Explainer], *,
                   orders=("morf", "lerf", "random"), **perturbation) -> list[dict]:
    """For each explainer: relevance, region-perturbation curves per order, AOPC with 95% CI."""
    rows = []
    for name, explain in explainers.items():
        relevance = explain(model, images, target)
        curves = {order: region_perturbation(model, images, relevance, target, order=order,
                                             generator=torch.Generator().manual_seed(0), **perturbation)
                  for order in orders}
        rows += _rows(name, curves)
    return rows


def compare_text(model: nn.Module, token_ids: Tensor, target: Tensor, explainers: Mapping[str, Callable], *,
                 lengths: Tensor | None = None, orders=("morf", "lerf", "random"), **perturbation) -> list[dict]:
    """Token deletion curves per explainer (``explain(model, ids, target) -> (B, T)`` token relevance)."""
    rows = []
    for name, explain in explainers.items():
        relevance = explain(model, token_ids, target)
        curves = {order: token_perturbation(model, token_ids, relevance, target, lengths=lengths, order=order,
                                            generator=torch.Generator().manual_seed(0), **perturbation)
                  for order in orders}
        rows += _rows(name, curves)
    return rows


def format_table(rows: list[dict]) -> str:
    """The tidy rows as a fixed-width text table."""
    lines = [f"{'explainer':34s} {'order':14s} {'AOPC':>9s} {'95% CI':>21s} {'n':>5s}"]
    for r in rows:
        lines.append(f"{r['explainer'][:34]:34s} {r['order']:14s} {r['aopc']:9.4f} "
                     f"[{r['ci_low']:8.4f}, {r['ci_high']:8.4f}] {r['n']:5d}")
    return "\n".join(lines)
