"""Perturbation curves: region perturbation / pixel flipping for images, token deletion for text.

Batched and device-agnostic: every step perturbs the whole batch at once and runs one forward.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.checks import check_inputs, check_output, resolve_target
from .checks import channel_sum, check_choice, check_count, check_finite, check_fraction, check_model, exact_dtype

ORDERS = ("morf", "lerf", "random")
SCORES = ("logit", "probability")
REPLACEMENTS = ("constant", "mean", "blur", "uniform")


def _score(output: Tensor, target: Tensor, score: str) -> Tensor:
    if score == "probability":
        output = torch.softmax(output, 1)
    return output.gather(1, target[:, None])[:, 0]


def _ranking(scores: Tensor, order: str, generator: torch.Generator | None) -> Tensor:
    """Indices (B, N) of the units in perturbation order (ties: the earlier index first)."""
    if order == "random":
        noise = torch.rand(scores.shape, generator=generator, device="cpu").to(scores.device)
        return noise.argsort(1)
    return torch.sort(scores, dim=1, descending=order == "morf", stable=True).indices


def _bound(bound: float | Tensor, images: Tensor, name: str) -> Tensor:
    bound = torch.as_tensor(bound, dtype=images.dtype, device=images.device)
    try:
        torch.broadcast_shapes(bound.shape, images.shape[1:])
    except RuntimeError:
        raise ValueError(f"{name} must be a number or broadcast to one image {tuple(images.shape[1:])} "
                         f"(e.g. (1, C, 1, 1) per channel), got shape {tuple(bound.shape)}") from None
    return check_finite(bound, name)


def replacement_image(images: Tensor, replacement: str = "constant", *, value: float = 0.0,
                      low: float | Tensor = 0.0, high: float | Tensor = 1.0, sigma: float = 3.0,
                      generator: torch.Generator | None = None) -> Tensor:
    r"""The values perturbed regions take, one image per input image: ``(B, C, H, W)``.

    - ``"constant"``: ``value`` everywhere.
    - ``"mean"``: each image's per-channel mean.
    - ``"blur"``: a Gaussian blur of the image, :math:`\sigma` = ``sigma`` pixels, kernel
      :math:`2\lceil 3\sigma \rceil + 1` (at most the image size; reflected borders).
    - ``"uniform"``: noise :math:`U[\mathrm{low}, \mathrm{high})` per pixel and channel (Samek et al.
      2017). ``low``/``high`` must be the model's input range: numbers, or per-channel tensors
      ``(1, C, 1, 1)`` for normalized inputs (:func:`seqlrp.cnn.bounds_from_normalization`). Drawn
      from ``generator`` (on the CPU, so the same seed gives the same noise on every device).

    Drawn once per image: pass the result as ``replacement=`` to :func:`region_perturbation` so
    that every order and every explainer replaces regions with the same values.
    """
    check_inputs(images, "images")
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    check_choice("replacement", replacement, REPLACEMENTS)
    if replacement == "constant":
        return torch.full_like(images, float(check_finite(torch.as_tensor(value, dtype=torch.float64), "value")))
    if replacement == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    if replacement == "blur":
        from torchvision.transforms.functional import gaussian_blur

        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
            raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
        kernel = 2 * math.ceil(3 * sigma) + 1
        height, width = images.shape[-2:]  # reflection needs kernel // 2 < size
        return gaussian_blur(images, kernel_size=[min(kernel, 2 * width - 1), min(kernel, 2 * height - 1)],
                             sigma=[float(sigma), float(sigma)])
    low_t, high_t = _bound(low, images, "low"), _bound(high, images, "high")
    if not bool((low_t < high_t).all()):
        raise ValueError("uniform noise needs low < high (the model's input range) in every channel")
    noise = torch.rand(images.shape, generator=generator, device="cpu", dtype=images.dtype).to(images.device)
    return low_t + (high_t - low_t) * noise


def _region_sums(heat: Tensor, patch: int) -> Tensor:
    """``(B, H, W)`` -> ``(B, ceil(H / patch), ceil(W / patch))`` sums (edge regions: their pixels only)."""
    batch, height, width = heat.shape
    h, w = -(-height // patch), -(-width // patch)
    padded = F.pad(heat, (0, w * patch - width, 0, h * patch - height))
    return padded.view(batch, h, patch, w, patch).sum((2, 4))


@torch.no_grad()
def region_perturbation(model: nn.Module | Callable, images: Tensor, relevance: Tensor,
                        target: int | Tensor | Callable | None, *, patch: int = 1, order: str = "morf",
                        steps: int = 20, fraction: float = 1.0, replacement: str | Tensor = "constant",
                        value: float = 0.0, low: float | Tensor = 0.0, high: float | Tensor = 1.0,
                        sigma: float = 3.0, score: str = "logit", generator: torch.Generator | None = None) -> Tensor:
    r"""Score of ``target`` while ``patch x patch`` regions are replaced, in relevance order.

    Region relevance is the sum over its pixels and ALL channels; a replaced region is replaced in all
    channels. ``patch=1`` is pixel flipping. The first ``ceil(fraction * regions)`` regions in the
    order are replaced over ``steps`` steps, ``ceil(that / steps)`` more per step.

    Parameters
    ----------
    model : nn.Module or callable
        ``model(images) -> (B, classes)``; an ``nn.Module`` must be in eval mode. Not modified.
    images : Tensor
        ``(B, C, H, W)``, floating point, finite.
    relevance : Tensor
        ``(B, C', H, W)`` or ``(B, H, W)``, finite.
    target : int, Tensor, callable or None
        Class per sample as in :func:`seqlrp.explain` (None: the predicted class of ``images``).
    order : {"morf", "lerf", "random"}
        Most relevant first, least relevant first, or random (from ``generator``).
    replacement : {"constant", "mean", "blur", "uniform"} or Tensor
        See :func:`replacement_image` (``value``, ``low``/``high``, ``sigma`` are its parameters), or
        the replacement image itself, ``(B, C, H, W)``. With a string the replacement is drawn from
        ``generator`` before the random order, so one seed gives every order the same noise.
    score : {"logit", "probability"}
        The target's logit or softmax probability.

    Returns
    -------
    Tensor
        ``(B, steps + 1)`` scores; column 0 is the unperturbed input.
    """
    check_model(model)
    check_inputs(images, "images")
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    batch, _, height, width = images.shape
    heat = channel_sum(relevance, batch, (height, width)).to(images.device, exact_dtype(images.device))
    if check_count("patch", patch) > min(height, width):
        raise ValueError(f"patch must be at most the image size min(H, W) = {min(height, width)}, got {patch}")
    check_choice("order", order, ORDERS)
    check_count("steps", steps)
    check_fraction("fraction", fraction)
    check_choice("score", score, SCORES)
    if isinstance(replacement, Tensor):
        if replacement.shape != images.shape:
            raise ValueError(f"a replacement image must have the images' shape {tuple(images.shape)}, "
                             f"got {tuple(replacement.shape)}")
        fill = check_finite(replacement, "replacement").to(images)
    else:
        fill = replacement_image(images, replacement, value=value, low=low, high=high, sigma=sigma,
                                 generator=generator)
    output = model(images)
    check_output(output, batch)
    target = resolve_target(output, target)
    regions = _region_sums(heat, patch)
    h, w = regions.shape[1:]
    ranking = _ranking(regions.flatten(1), order, generator)
    total = math.ceil(fraction * h * w)
    per_step = -(-total // steps)
    curve = [_score(output, target, score)]
    chosen = torch.zeros(batch, h * w, dtype=torch.bool, device=images.device)
    for step in range(1, steps + 1):
        chosen.scatter_(1, ranking[:, :min(step * per_step, total)], True)
        mask = chosen.view(batch, 1, h, 1, w, 1).expand(-1, -1, -1, patch, -1, patch)
        mask = mask.reshape(batch, 1, h * patch, w * patch)[..., :height, :width]
        perturbed = torch.where(mask, fill, images)  # the mask broadcasts over ALL channels
        curve.append(_score(model(perturbed), target, score))
    return torch.stack(curve, 1)


def _check_tokens(token_ids: Tensor, relevance: Tensor, lengths: Tensor | None) -> Tensor:
    """Validate ids and relevance; the lengths as a CPU long tensor (all ``T`` when not given)."""
    if not isinstance(token_ids, Tensor) or token_ids.is_floating_point() or token_ids.is_complex() \
            or token_ids.dtype == torch.bool:
        raise TypeError("token_ids must be an integer tensor (B, T) of token ids, got "
                        f"{getattr(token_ids, 'dtype', type(token_ids).__name__)}")
    if token_ids.dim() != 2 or token_ids.numel() == 0:
        raise ValueError(f"token_ids must be a non-empty (B, T) tensor, got shape {tuple(token_ids.shape)}")
    check_finite(relevance, "relevance")
    if relevance.shape != token_ids.shape:
        raise ValueError(f"relevance has shape {tuple(relevance.shape)}; expected the token ids' shape "
                         f"{tuple(token_ids.shape)} (one value per token, e.g. TextExplanation.token_relevance)")
    batch, total = token_ids.shape
    if lengths is None:
        return torch.full((batch,), total, dtype=torch.long)
    lengths = torch.as_tensor(lengths)
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must hold integers (token counts), got dtype {lengths.dtype}")
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), one per sequence, got {tuple(lengths.shape)}")
    if bool(((lengths < 1) | (lengths > total)).any()):
        raise ValueError(f"lengths must lie in 1..{total} (the padded length), got {lengths.min()}..{lengths.max()}")
    return lengths.long().cpu()


@torch.no_grad()
def token_perturbation(model: nn.Module | Callable, token_ids: Tensor, relevance: Tensor,
                       target: int | Tensor | Callable | None, *, lengths: Tensor | None = None,
                       order: str = "morf", steps: int = 10, replacement: str | int = "remove", pad_id: int = 0,
                       score: str = "logit", generator: torch.Generator | None = None) -> Tensor:
    """Score of ``target`` while the ``k = 0..steps`` most (MoRF) / least (LeRF) relevant or random tokens
    are replaced by the id ``replacement`` (e.g. an <unk> id) or removed (``"remove"``: later tokens
    shift left, lengths shrink, at least one token stays). Padding is never perturbed; a sequence
    shorter than ``k`` stays at its fully perturbed state.

    The model is called as ``model(ids, lengths)`` when ``lengths`` is given and as ``model(ids)``
    otherwise (removed tokens then leave ``pad_id`` at the end); its own errors propagate.

    Returns
    -------
    Tensor
        ``(B, steps + 1)`` scores; column 0 is the unperturbed sequence.
    """
    check_model(model)
    if not (replacement == "remove" or (isinstance(replacement, int) and not isinstance(replacement, bool))):
        raise ValueError(f"replacement must be 'remove' or a token id (int), got {replacement!r}")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int):
        raise TypeError(f"pad_id must be an int token id, got {pad_id!r}")
    given_lengths = lengths is not None
    lengths = _check_tokens(token_ids, relevance, lengths)
    check_choice("order", order, ORDERS)
    check_count("steps", steps)
    check_choice("score", score, SCORES)
    batch, total = token_ids.shape
    valid = torch.arange(total)[None, :] < lengths[:, None]
    scores = relevance.detach().to(torch.float64).cpu()
    # padding goes last in every order: -inf/+inf against the order, or pushed behind the random keys
    if order == "random":
        ranking = torch.rand(scores.shape, generator=generator).masked_fill(~valid, 2.0).argsort(1)
    else:
        ranking = _ranking(scores.masked_fill(~valid, float("-inf" if order == "morf" else "inf")), order, generator)

    def run(ids: Tensor, lens: Tensor) -> Tensor:
        ids = ids.to(token_ids.device)
        return model(ids, lens) if given_lengths else model(ids)

    output = run(token_ids, lengths)
    check_output(output, batch)
    target = resolve_target(output, target)
    curve = [_score(output, target, score)]
    rank_position = torch.empty_like(ranking).scatter_(1, ranking, torch.arange(total).expand(batch, total))
    limit = (lengths - 1 if replacement == "remove" else lengths).clamp(min=0)
    for k in range(1, steps + 1):
        picked = (rank_position < torch.clamp(limit, max=k)[:, None]) & valid
        if replacement == "remove":
            keep = valid & ~picked
            new_lengths = keep.sum(1)
            order_keep = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # kept tokens first, in order
            ids = token_ids.cpu().gather(1, order_keep)
            ids = ids.masked_fill(torch.arange(total)[None, :] >= new_lengths[:, None], pad_id)
            curve.append(_score(run(ids, new_lengths), target, score))
        else:
            curve.append(_score(run(token_ids.cpu().masked_fill(picked, replacement), lengths), target, score))
    return torch.stack(curve, 1)
