"""Perturbation curves: region perturbation / pixel flipping for images, token deletion for text.

Batched and device-agnostic: every step perturbs the whole batch at once and runs one forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ORDERS = ("morf", "lerf", "random")


def _score(output: Tensor, target: Tensor, score: str) -> Tensor:
    if score == "logit":
        return output.gather(1, target[:, None])[:, 0]
    if score == "probability":
        return torch.softmax(output, 1).gather(1, target[:, None])[:, 0]
    raise ValueError(f"score must be 'logit' or 'probability', got {score!r}")


def _ranking(scores: Tensor, order: str, generator: torch.Generator | None) -> Tensor:
    """Indices (B, N) of the units in perturbation order."""
    if order == "morf":
        return torch.sort(scores, dim=1, descending=True, stable=True).indices
    if order == "lerf":
        return torch.sort(scores, dim=1, descending=False, stable=True).indices
    if order == "random":
        noise = torch.rand(scores.shape, generator=generator, device="cpu").to(scores.device)
        return noise.argsort(1)
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def _replacement(images: Tensor, kind: str, value: float, generator: torch.Generator | None,
                 low: float, high: float) -> Tensor:
    if kind == "constant":
        return torch.full_like(images, value)
    if kind == "mean":  # per image and channel
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    if kind == "blur":
        from torchvision.transforms.functional import gaussian_blur

        return gaussian_blur(images, kernel_size=[9, 9], sigma=[3.0, 3.0])
    if kind == "uniform":
        noise = torch.rand(images.shape, generator=generator, device="cpu", dtype=images.dtype)
        return (low + (high - low) * noise).to(images.device)
    raise ValueError(f"replacement must be constant, mean, blur or uniform, got {kind!r}")


@torch.no_grad()
def region_perturbation(model: nn.Module | Callable, images: Tensor, relevance: Tensor, target: Tensor, *,
                        patch: int = 1, order: str = "morf", steps: int = 20, replacement: str = "constant",
                        value: float = 0.0, score: str = "logit", generator: torch.Generator | None = None,
                        low: float = 0.0, high: float = 1.0) -> Tensor:
    """Score of ``target`` while ``patch x patch`` regions are replaced, in relevance order.

    Region relevance is the sum over its pixels and ALL channels; a replaced region is replaced in all
    channels. ``patch=1`` is pixel flipping. Each step perturbs ``ceil(regions / steps)`` more regions.

    Returns
    -------
    Tensor
        ``(B, steps + 1)`` scores; column 0 is the unperturbed input.
    """
    batch, _, height, width = images.shape
    if relevance.shape[0] != batch or relevance.shape[-2:] != (height, width):
        raise ValueError(f"relevance {tuple(relevance.shape)} does not match images {tuple(images.shape)}")
    heat = relevance.reshape(batch, -1, height, width).sum(1, keepdim=True).to(images.dtype)
    regions = F.avg_pool2d(heat, patch, stride=patch, ceil_mode=True) * patch * patch  # (B, 1, h, w)
    h, w = regions.shape[-2:]
    ranking = _ranking(regions.flatten(1), order, generator)
    n_regions = h * w
    per_step = -(-n_regions // steps)
    fill = _replacement(images, replacement, value, generator, low, high)
    target = torch.as_tensor(target, device=images.device).expand(batch) if not torch.is_tensor(target) or \
        target.dim() == 0 else target.to(images.device)
    curve = [_score(model(images), target, score)]
    chosen = torch.zeros(batch, n_regions, dtype=images.dtype, device=images.device)
    for step in range(1, steps + 1):
        upto = min(step * per_step, n_regions)
        chosen.scatter_(1, ranking[:, :upto], 1.0)
        mask = chosen.view(batch, 1, h, w)
        mask = F.interpolate(mask, scale_factor=patch, mode="nearest")[..., :height, :width]
        perturbed = images * (1 - mask) + fill * mask  # the mask broadcasts over ALL channels
        curve.append(_score(model(perturbed), target, score))
    return torch.stack(curve, 1)


@torch.no_grad()
def token_perturbation(model: nn.Module | Callable, token_ids: Tensor, relevance: Tensor, target: Tensor, *,
                       lengths: Tensor | None = None, order: str = "morf", steps: int = 10,
                       replacement: str | int = "remove", pad_id: int = 0, score: str = "logit",
                       generator: torch.Generator | None = None) -> Tensor:
    """Score of ``target`` while the ``k = 0..steps`` most (MoRF) / least (LeRF) relevant or random tokens
    are replaced by the id ``replacement`` (e.g. an <unk> id) or removed (``"remove"``: later tokens
    shift left, lengths shrink, at least one token stays). Padding is never perturbed; a sequence
    shorter than ``k`` stays at its fully perturbed state.

    Returns
    -------
    Tensor
        ``(B, steps + 1)`` scores; column 0 is the unperturbed sequence.
    """
    batch, total = token_ids.shape
    lengths = torch.full((batch,), total, dtype=torch.long) if lengths is None else torch.as_tensor(lengths).long()
    valid = torch.arange(total)[None, :] < lengths[:, None]
    scores = relevance.detach().to(torch.float64).cpu().masked_fill(~valid, float("nan"))
    # padding goes last in every order: give it +inf/-inf against the order, or push it in random
    if order == "morf":
        ranking = _ranking(scores.nan_to_num(float("-inf")), order, generator)
    elif order == "lerf":
        ranking = _ranking(scores.nan_to_num(float("inf")), order, generator)
    else:
        noise = torch.rand(scores.shape, generator=generator).masked_fill(~valid, 2.0)
        ranking = noise.argsort(1)
    target = target.to(token_ids.device)

    def run(ids: Tensor, lens: Tensor) -> Tensor:
        try:
            out = model(ids, lens)
        except TypeError:
            out = model(ids)
        return _score(out, target, score)

    curve = [run(token_ids, lengths)]
    for k in range(1, steps + 1):
        limit = lengths if replacement != "remove" else (lengths - 1)
        count = torch.minimum(torch.full_like(lengths, k), limit.clamp(min=0))
        rank_position = torch.empty_like(ranking)
        rank_position.scatter_(1, ranking, torch.arange(total).expand(batch, total))
        picked = rank_position < count[:, None]
        picked &= valid
        if replacement == "remove":
            keep = valid & ~picked
            new_lengths = keep.sum(1)
            order_keep = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # kept tokens first, in order
            ids = token_ids.cpu().gather(1, order_keep)
            ids = ids.masked_fill(torch.arange(total)[None, :] >= new_lengths[:, None], pad_id)
            curve.append(run(ids.to(token_ids.device), new_lengths))
        else:
            ids = token_ids.cpu().masked_fill(picked, int(replacement))
            curve.append(run(ids.to(token_ids.device), lengths))
    return torch.stack(curve, 1)
