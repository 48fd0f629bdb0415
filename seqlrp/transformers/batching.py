"""Many texts through a Hugging Face model and its tokenizer, each explained as if it were alone.

Every text is tokenized on its own; texts of the same token count (and the same kind: a string, or a list of words
already split) are explained together in batches of at most ``batch_size``, so no batch holds padding and no text's
relevance can depend on another's -- for any model :func:`seqlrp.explain_text` takes through its Hugging Face route
(attention models are padding-invariant anyway; recurrent ones need not be). The command line
(``seqlrp explain-text --hf-model``) and :func:`seqlrp.explain_dataset` with a tokenizer share this.

A text longer than the model reads (the smaller of the tokenizer's ``model_max_length`` and the configuration's
``max_position_embeddings`` / ``n_positions``) is truncated to it: :func:`plan` counts those texts. A text that is
empty or only whitespace is not explained.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.inputs import model_device

#: model_max_length of a tokenizer that does not know its model's limit (transformers' VERY_LARGE_INTEGER)
_NO_LIMIT = 1_000_000

Text = str | list[str]
_DEFAULT_NAME = re.compile(r"LABEL_\d+")


def class_names(model: nn.Module) -> list[str] | None:
    """The configuration's ``id2label`` in class order, unless they are only transformers' defaults (``LABEL_0``)."""
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    names = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(len(id2label))]
    if not names or all(_DEFAULT_NAME.fullmatch(name) for name in names):
        return None
    return names


def token_limit(model: nn.Module, tokenizer: Any) -> int | None:
    """The most tokens the model reads: the tokenizer's ``model_max_length`` and the configuration's position table,
    whichever is smaller (None: neither says; a recurrent model)."""
    limits = []
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, int) and 0 < length < _NO_LIMIT:
        limits.append(length)
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            limits.append(value)
            break
    return min(limits) if limits else None


def is_blank(text: Text) -> bool:
    """A text with nothing to explain: empty or whitespace (a list of words: no non-blank word)."""
    if isinstance(text, str):
        return not text.strip()
    return not any(str(word).strip() for word in text)


def _call(tokenizer: Any, texts: list[Text], limit: int | None, tensors: bool):
    split = isinstance(texts[0], list)
    options = {"truncation": True, "max_length": limit} if limit is not None else {"truncation": False}
    return tokenizer(texts, is_split_into_words=split, padding=False, return_tensors="pt" if tensors else None,
                     **options)


@dataclass
class Plan:
    """Which texts go together: ``batches`` (row indices; each batch one token count and kind), ``lengths``
    (tokens per text after truncation, 0 for a blank text) and ``truncated`` (rows cut to ``limit``)."""

    batches: list[list[int]]
    lengths: np.ndarray
    truncated: list[int]
    limit: int | None


def plan(tokenizer: Any, texts: Sequence[Text], batch_size: int, limit: int | None) -> Plan:
    """Tokenize every text alone and group the rows into batches of one token count (see the module docstring)."""
    lengths = np.zeros(len(texts), np.int64)
    truncated: list[int] = []
    kinds = np.zeros(len(texts), np.int64)
    for kind, wanted in ((0, str), (1, list)):
        rows = [i for i, text in enumerate(texts) if isinstance(text, wanted) and not is_blank(text)]
        if not rows:
            continue
        ids = _call(tokenizer, [texts[i] for i in rows], None, tensors=False)["input_ids"]
        for row, found in zip(rows, ids, strict=True):
            lengths[row] = len(found) if limit is None else min(len(found), limit)
            kinds[row] = kind
            if limit is not None and len(found) > limit:
                truncated.append(row)
    present = np.flatnonzero(lengths > 0)
    keys = lengths[present] * 2 + kinds[present]
    order = present[np.argsort(keys, kind="stable")]
    batches: list[list[int]] = []
    for row in order.tolist():
        if batches and len(batches[-1]) < batch_size and lengths[batches[-1][0]] == lengths[row] \
                and kinds[batches[-1][0]] == kinds[row]:
            batches[-1].append(row)
        else:
            batches.append([row])
    return Plan(batches, lengths, sorted(truncated), limit)


def batch_size_for(model: nn.Module, batch_size: int) -> int:
    """``batch_size``, or 1 for a model without a padding id in its configuration (GPT-2's head refuses batches
    larger than one then, even without padding)."""
    config = getattr(model, "config", None)
    return 1 if config is not None and getattr(config, "pad_token_id", 0) is None else batch_size


def explain_texts(model: nn.Module, tokenizer: Any, texts: Sequence[Text], target=None, composite=None, *,
                  batch_size: int = 32, limit: int | None | str = "model",
                  explain: Callable | None = None, device: torch.device | None = None,
                  schedule: Plan | None = None) -> Iterator[tuple[list[int], Any, Any]]:
    """Explain ``texts`` batch by batch: yields ``(rows, batch, result)`` with ``rows`` the indices of the texts in
    the batch (``result``'s examples, in that order), ``batch`` the tokenizer's output and ``result`` that of
    ``explain(model, batch, target, composite)`` (default :func:`seqlrp.explain_text` with the tokenizer, which
    writes the words).

    ``limit``: the most tokens per text (``"model"``: :func:`token_limit`; None: no truncation). ``device``: where
    the batch goes (default: the model's). ``schedule``: the :func:`plan` of these texts when the caller made it
    (to count the truncated ones); its limit is used. Blank texts are left out (see the module docstring).
    """
    if explain is None:
        from ..lstm.text import explain_text

        def explain(model, batch, target, composite):
            return explain_text(model, batch, target, composite, tokenizer=tokenizer)
    if schedule is None:
        schedule = plan(tokenizer, texts, batch_size_for(model, batch_size),
                        token_limit(model, tokenizer) if limit == "model" else limit)
    limit = schedule.limit
    if device is None:
        device = model_device(model)
    for rows in schedule.batches:
        batch = _call(tokenizer, [texts[i] for i in rows], limit, tensors=True).to(device)
        yield rows, batch, explain(model, batch, target, composite)


__all__ = ["Plan", "batch_size_for", "class_names", "explain_texts", "is_blank", "plan", "token_limit"]
