r"""Ground-truth metrics (Arras, Osman, Samek 2022, CLEVR-XAI): how much relevance falls on the object
that decides the label.

Both take the relevance of a batch, ``(B, *S)`` or ``(B, C, *S)`` (summed over the channels ``C``:
one value per pixel, CLEVR-XAI's sum pooling), and a boolean ground-truth mask ``(B, *S)`` (``S``:
``(H, W)`` for images, ``(T,)`` for tokens). They return one value per sample, ``(B,)`` float64 (float32 on MPS),
batched (no loop over samples). Summarize with :func:`seqlrp.evaluate.summarize`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import channel_sum, exact_dtype


def _flatten(relevance: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor of dtype bool, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype torch.bool (True = ground truth), got {mask.dtype}; "
                        "convert with mask.bool() or (mask > 0)")
    if mask.dim() < 2:
        raise ValueError(f"mask must be (B, *S) with at least one position axis, got shape {tuple(mask.shape)}")
    pixels = channel_sum(relevance, mask.shape[0], mask.shape[1:])
    pixels = pixels.to(dtype=exact_dtype(pixels.device)).flatten(1)
    mask = mask.to(pixels.device).flatten(1)
    empty = (~mask.any(1)).nonzero().flatten()
    if len(empty):
        raise ValueError(f"the ground-truth mask of sample(s) {empty.tolist()[:10]} is empty: both metrics are "
                         "undefined without a ground truth; drop these samples")
    return pixels, mask


def relevance_mass_accuracy(relevance: Tensor, mask: Tensor) -> Tensor:
    r"""Share of the positive relevance that lies inside the ground truth.

    With :math:`R_p = \sum_c R_{c,p}` the relevance of position :math:`p` and :math:`M` the mask:

    .. math:: \mathrm{mass} = \frac{\sum_{p \in M} \max(R_p, 0)}{\sum_{p} \max(R_p, 0)} \in [0, 1]

    Conventions: only positive relevance counts (CLEVR-XAI), after the channel sum; a sample with no
    positive relevance at all (all zero or all negative) scores 0 (no evidence on the object); an
    empty mask raises ``ValueError``. A uniformly random positive map scores about
    :math:`|M| / N` (the mask's share of the positions).

    Parameters
    ----------
    relevance : Tensor
        ``(B, *S)`` or ``(B, C, *S)``, finite.
    mask : Tensor
        ``(B, *S)``, dtype bool, at least one ``True`` per sample.

    Returns
    -------
    Tensor
        ``(B,)`` float64 values in ``[0, 1]``.

    Examples
    --------
    >>> relevance = torch.tensor([[[3.0, -1.0], [1.0, 0.0]]])      # (1, 2, 2)
    >>> mask = torch.tensor([[[True, True], [False, False]]])
    >>> relevance_mass_accuracy(relevance, mask)                   # 3 / (3 + 1)
    tensor([0.7500], dtype=torch.float64)
    """
    pixels, mask = _flatten(relevance, mask)
    positive = pixels.clamp(min=0)
    total = positive.sum(1)
    inside = (positive * mask).sum(1)
    return torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), 0.0)


def relevance_rank_accuracy(relevance: Tensor, mask: Tensor) -> Tensor:
    r"""Share of the :math:`K = |M|` highest-relevance positions that lie inside the ground truth.

    .. math:: \mathrm{rank} = \frac{|\mathrm{top}_K(R) \cap M|}{K} \in [0, 1], \quad K = |M|

    where :math:`R_p = \sum_c R_{c,p}` (signed: the most positive positions rank first).

    Ties: positions whose relevance equals the :math:`K`-th largest value share the remaining
    places in proportion, i.e. the value is the expectation over a uniformly random tie break
    (neither the mask nor the pixel order is favoured). So an all-zero (or constant) map scores
    exactly :math:`|M| / N`, the chance level. Negative relevance takes part in the ranking like any
    value. An empty mask raises ``ValueError``.

    Parameters
    ----------
    relevance : Tensor
        ``(B, *S)`` or ``(B, C, *S)``, finite.
    mask : Tensor
        ``(B, *S)``, dtype bool, at least one ``True`` per sample.

    Returns
    -------
    Tensor
        ``(B,)`` float64 values in ``[0, 1]``.

    Examples
    --------
    >>> relevance = torch.tensor([[[3.0, -1.0], [1.0, 0.0]]])      # top 2: 3.0 (inside), 1.0 (outside)
    >>> mask = torch.tensor([[[True, True], [False, False]]])
    >>> relevance_rank_accuracy(relevance, mask)
    tensor([0.5000], dtype=torch.float64)
    """
    pixels, mask = _flatten(relevance, mask)
    k = mask.sum(1)
    kth = pixels.sort(1, descending=True).values.gather(1, (k - 1)[:, None])  # the K-th largest value
    above, tied = pixels > kth, pixels == kth
    places_left = (k - above.sum(1)).to(pixels.dtype)  # >= 1: the K-th value itself is tied
    hits = (above & mask).sum(1) + places_left * (tied & mask).sum(1) / tied.sum(1)
    return hits / k


__all__ = ["relevance_mass_accuracy", "relevance_rank_accuracy"]
