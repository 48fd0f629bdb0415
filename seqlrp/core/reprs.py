"""Short reprs: a tensor (or a long sequence of numbers) as its shape, dtype and range, never every value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

#: sequences longer than this are summarized
_LONG = 8


def _number(value: float) -> str:
    return f"{value:.4g}"


def summary(value: Any) -> str:
    """``repr`` of ``value``, with tensors and long number sequences summarized.

    A tensor becomes ``Tensor(2, 3, float64) in [-0.5, 1.2]`` (``Tensor(1, 3, 224, 224) in [0, 1]``: shape,
    dtype unless float32, range); a 0-d tensor its value; a tuple or list of more than 8 numbers
    ``(150528 values in [0, 1])``.
    """
    if isinstance(value, Tensor):
        if value.dim() == 0 and not value.is_meta:
            return repr(value.item())
        shape = ", ".join(str(n) for n in value.shape)
        dtype = "" if value.dtype == torch.float32 else f", {str(value.dtype).removeprefix('torch.')}"
        head = f"Tensor({shape}{dtype})"
        if value.numel() == 0 or value.is_meta or value.is_complex():
            return head
        finite = value.detach()
        if finite.dtype == torch.bool:
            return f"{head} with {int(finite.sum())} True"
        return f"{head} in [{_number(float(finite.min()))}, {_number(float(finite.max()))}]"
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > _LONG \
            and all(isinstance(v, (int, float)) for v in value):
        return f"({len(value)} values in [{_number(min(value))}, {_number(max(value))}])"
    return repr(value)
