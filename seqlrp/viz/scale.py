"""A numeric colour scale (a colorbar in HTML): the gradient of the colormap with values under it."""

from __future__ import annotations

import numpy as np
from markupsafe import Markup, escape

from .colormaps import colorize, hex_color
from .numbers import number

#: positions of the scale's ticks in [-1, 1]
TICKS = (-1.0, -0.5, 0.0, 0.5, 1.0)


def scale_html(cmap="bwr", vmax: float | None = None, caption: str = "", clipped: bool = False) -> Markup:
    """``<div class="scale">``: the colormap from ``-vmax`` to ``+vmax`` with five numbered ticks.

    ``vmax``: the relevance drawn at full colour (``None``: ticks read ``−max |R|`` … ``+max |R|``).
    ``clipped``: values beyond ``±vmax`` were clipped (percentile normalization); the end ticks read ``≤``/``≥``.
    ``caption``: what the scale spans (e.g. "per example" or "shared by the section").
    """
    stops = ", ".join(hex_color(c) for c in colorize(np.linspace(-1, 1, 11), cmap))
    ticks = []
    for position in TICKS:
        if vmax is None:
            label = {-1.0: "−max |R|", 0.0: "0", 1.0: "+max |R|"}.get(position, "")
        else:
            label = "0" if position == 0 else number(position * vmax, signed=True)
            if clipped and abs(position) == 1:
                label = ("≤ " if position < 0 else "≥ ") + label
        ticks.append(f'<span class="tick" style="left:{(position + 1) * 50:g}%">{escape(label)}</span>')
    value = "" if vmax is None else f' data-vmax="{escape(number(vmax))}"'
    return Markup(f'<div class="scale"{value}><span class="bar" style="background:linear-gradient(to right, {stops})">'
                  f'</span><span class="ticks">{"".join(ticks)}</span>'
                  + (f'<span class="caption">{escape(caption)}</span>' if caption else "") + "</div>")


__all__ = ["TICKS", "scale_html"]
