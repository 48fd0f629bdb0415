"""Run several explainers on the same data and return tidy tables (lists of dicts, pandas-free).

AOPC rows: ``explainer, replacement, order, aopc, ci_low, ci_high, n`` (order ``"morf-lerf gap"``
is the per-sample AOPC(MoRF) − AOPC(LeRF)). Ground-truth rows: ``explainer, metric, value, ci_low,
ci_high, n``. Every explainer sees the same replacement values and the same random order.

An explainer is ``explain(model, inputs, target) -> relevance`` or, to reuse one explanation in
several comparisons, the relevance tensor itself (see :mod:`seqlrp.evaluate.explainers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .aopc import aopc, summarize
from .explainers import Explainer
from .ground_truth import relevance_mass_accuracy, relevance_rank_accuracy
from .perturbation import ORDERS, region_perturbation, replacement_image, token_perturbation

_FILL_PARAMETERS = ("value", "low", "high", "sigma")


def _explain(explainer: Explainer, model: nn.Module, inputs: Tensor, target: Tensor | None) -> Tensor:
    return explainer if isinstance(explainer, Tensor) else explainer(model, inputs, target)


def _row(summary, **keys) -> dict:
    return {**keys, "ci_low": summary.low, "ci_high": summary.high, "n": summary.n}


def _aopc_rows(name: str, replacement: str, curves: dict[str, Tensor]) -> list[dict]:
    per_order = {order: aopc(curve) for order, curve in curves.items()}
    if "morf" in curves and "lerf" in curves:
        per_order["morf-lerf gap"] = per_order["morf"] - per_order["lerf"]
    return [_row(s, explainer=name, replacement=replacement, order=order, aopc=s.mean)
            for order, values in per_order.items() for s in [summarize(values)]]


def _curves(perturb: Callable[[Tensor, str], Tensor], relevance: Tensor, orders: Sequence[str],
            cache: dict[str, Tensor]) -> dict[str, Tensor]:
    """Curves per order; the random order does not depend on the relevance: computed once, then cached."""
    curves = {}
    for order in orders:
        if order == "random" and "random" in cache:
            curves[order] = cache["random"]
            continue
        curves[order] = perturb(relevance, order)
        if order == "random":
            cache["random"] = curves[order]
    return curves


def _compare(model: nn.Module, inputs: Tensor, target: Tensor | None, explainers: Mapping[str, Explainer],
             perturb: Callable[[Tensor, str], Tensor], label: str, orders: Sequence[str]) -> list[dict]:
    rows, cache = [], {}
    for name, explain in explainers.items():
        rows += _aopc_rows(name, label, _curves(perturb, _explain(explain, model, inputs, target), orders, cache))
    return rows


def compare_images(model: nn.Module, images: Tensor, target: Tensor | None, explainers: Mapping[str, Explainer], *,
                   orders: Sequence[str] = ORDERS, replacement: str | Tensor = "constant", seed: int = 0,
                   **perturbation) -> list[dict]:
    """For each explainer: relevance, region-perturbation curves per order, AOPC with 95% CI.

    The replacement (e.g. uniform noise, see :func:`~seqlrp.evaluate.replacement_image`; ``value``,
    ``low``, ``high``, ``sigma`` are passed to it) is drawn once from ``seed`` and shared by every
    order and explainer; the random order uses ``seed`` too. Other keywords go to
    :func:`~seqlrp.evaluate.region_perturbation`.
    """
    label = replacement if isinstance(replacement, str) else "given"
    if isinstance(replacement, str):
        fill_parameters = {k: perturbation.pop(k) for k in _FILL_PARAMETERS if k in perturbation}
        replacement = replacement_image(images, replacement, generator=torch.Generator().manual_seed(seed),
                                        **fill_parameters)

    def perturb(relevance, order):
        return region_perturbation(model, images, relevance, target, order=order, replacement=replacement,
                                   generator=torch.Generator().manual_seed(seed), **perturbation)

    return _compare(model, images, target, explainers, perturb, label, orders)


def compare_text(model: nn.Module, token_ids: Tensor, target: Tensor | None, explainers: Mapping[str, Explainer], *,
                 lengths: Tensor | None = None, orders: Sequence[str] = ORDERS, seed: int = 0,
                 **perturbation) -> list[dict]:
    """Token deletion curves per explainer (``explain(model, ids, target) -> (B, T)`` token relevance)."""
    replacement = perturbation.get("replacement", "remove")
    label = replacement if isinstance(replacement, str) else f"id {replacement}"

    def perturb(relevance, order):
        return token_perturbation(model, token_ids, relevance, target, lengths=lengths, order=order,
                                  generator=torch.Generator().manual_seed(seed), **perturbation)

    return _compare(model, token_ids, target, explainers, perturb, label, orders)


def compare_ground_truth(model: nn.Module, inputs: Tensor, target: Tensor | None, masks: Tensor,
                         explainers: Mapping[str, Explainer]) -> list[dict]:
    """Relevance mass accuracy and relevance rank accuracy (mean, 95% CI) of each explainer against ``masks``."""
    rows = []
    for name, explain in explainers.items():
        relevance = _explain(explain, model, inputs, target)
        for metric, values in (("mass accuracy", relevance_mass_accuracy(relevance, masks)),
                               ("rank accuracy", relevance_rank_accuracy(relevance, masks))):
            summary = summarize(values)
            rows.append(_row(summary, explainer=name, metric=metric, value=summary.mean))
    return rows


def format_table(rows: list[dict]) -> str:
    """Tidy rows as a fixed-width text table (text left-aligned, numbers right-aligned, CI as one column)."""
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k != "ci_high"]
    header = ["95% CI" if k == "ci_low" else k for k in keys]

    def cell(row, key):
        if key == "ci_low":
            return f"[{row['ci_low']:8.4f}, {row['ci_high']:8.4f}]"
        value = row.get(key, "")
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    cells = [[cell(r, k) for k in keys] for r in rows]
    numeric = [k == "ci_low" or isinstance(rows[0].get(k), (int, float)) for k in keys] if rows else []
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]

    def line(values):
        return " ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    return "\n".join([line(header)] + [line(c) for c in cells]).rstrip()
