"""Class names: one per class, in class-index order; shown wherever a class appears."""

from __future__ import annotations

from collections.abc import Sequence


def check_labels(labels: Sequence[str] | None, classes: int) -> list[str] | None:
    """``labels`` as a list of ``classes`` strings (``None`` stays ``None``); a wrong count is a ValueError."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a list of class names (one per class), got {type(labels).__name__}")
    if len(labels) != classes:
        raise ValueError(f"labels has {len(labels)} names but the model has {classes} classes; pass one name per "
                         "class, in class-index order")
    return [str(name) for name in labels]


def class_name(labels: Sequence[str] | None, index) -> str:
    """``"name (index)"`` with labels, ``"index"`` without, ``"not given"`` for ``None``."""
    if index is None:
        return "not given"
    index = int(index)
    if labels is not None and 0 <= index < len(labels):
        return f"{labels[index]} ({index})"
    return str(index)


__all__ = ["check_labels", "class_name"]
