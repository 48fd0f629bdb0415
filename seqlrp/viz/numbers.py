"""One number format for every figure, table and tooltip of the reports: three significant digits."""

from __future__ import annotations

import math
import numbers


def number(value, signed: bool = False) -> str:
    """``value`` with three significant digits, trailing zeros kept (``1.00``, ``0.980``, ``0.183``, ``1.23e-05``).

    Integers (counts, class indices) stay integers; ``signed`` puts ``+`` before positive values; NaN and
    infinities are written ``nan``, ``inf``, ``-inf``.
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):+d}" if signed else str(int(value))
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        value = 0.0  # (no "-0.00")
    text = f"{value:+#.3g}" if signed else f"{value:#.3g}"
    return text[:-1] if text.endswith(".") else text  # (e.g. "123." -> "123")


__all__ = ["number"]
