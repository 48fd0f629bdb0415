"""What kind of input an entry point was given (the one place that decides "text or image"), and the device a
model's inputs go to."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

InputKind = Literal["text", "image"]


def input_kind(x: Any) -> InputKind:
    """``"text"`` for token ids (an integer tensor, a tokenizer's output -- a mapping with ``input_ids`` --, or
    anything not a tensor: a list of ids or of words), ``"image"`` for any other tensor (floating point: images,
    vectors, embeddings).

    :class:`seqlrp.Attribution` asks it of its inputs, the dataset sources of their first item; a bool or
    complex tensor counts as "image" (and is then refused by :func:`seqlrp.explain` with its own message).

    >>> import torch
    >>> input_kind(torch.tensor([[1, 2]])), input_kind(torch.zeros(1, 3)), input_kind(["a", "b"])
    ('text', 'image', 'text')
    >>> input_kind({"input_ids": torch.tensor([[1, 2]]), "attention_mask": torch.ones(1, 2)})
    'text'
    """
    if isinstance(x, Mapping) and "input_ids" in x:
        return "text"
    if isinstance(x, Tensor):
        return "image" if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool else "text"
    return "text"


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer): where its inputs go (the CPU for a model without any)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")
