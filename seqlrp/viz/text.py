"""Tokens colored by relevance, as safe HTML (every token escaped), with their values on demand."""

from __future__ import annotations

import numpy as np
import torch
from markupsafe import Markup, escape

from .colormaps import colorize, full_scale, hex_color, scaled, text_color
from .numbers import number
from .scale import scale_html


def _values(relevance) -> np.ndarray:
    if isinstance(relevance, torch.Tensor):
        return relevance.detach().cpu().double().numpy()
    return np.asarray(relevance, dtype=np.float64)


def token_colors(relevance, cmap="bwr", normalization: str = "absmax", vmax: float | None = None) -> list[str]:
    """Background colour (``#rrggbb``) per token."""
    rgb = colorize(scaled(_values(relevance), normalization, vmax), cmap)
    return [hex_color(c) for c in rgb.reshape(-1, 3)]


#: the chip of a special token ([CLS], [SEP], <s>): grey, never coloured by relevance (black on it: 14.8:1)
SPECIAL_BACKGROUND = "#e4e4e4"


def token_html(tokens: list[str], relevance, cmap="bwr", normalization: str = "absmax",
               focus: int | None = None, vmax: float | None = None, special=None) -> Markup:
    """``<span class="token">`` per token: relevance as background, the value in a tooltip and below the word.

    Tokens are HTML-escaped (``<script>`` shows as text), keep their unicode, and carry ``dir="auto"`` so
    right-to-left words render right; the container wraps long documents. The text colour is black or
    white, whichever contrasts more with the background (WCAG AA, >= 4.5:1, for every colour). The value
    (``<span class="value">``) is hidden until the report's "show values" toggle is on.
    ``focus``: the index of a token to outline (class ``token focus``). ``vmax``: the relevance drawn at
    full colour (a shared scale); ``None``: ``max |R|`` of these tokens (of the tokens that are not special).
    ``special``: one bool per token; a special token ([CLS], [SEP] of a Hugging Face tokenizer) is drawn grey
    (class ``token special``), not coloured, with its value in the tooltip and under it like every token.
    """
    values = _values(relevance)
    if len(tokens) != len(values):
        raise ValueError(f"{len(tokens)} tokens but {len(values)} relevance values")
    special = np.zeros(len(values), bool) if special is None else np.asarray(special, bool).reshape(-1)
    if len(special) != len(values):
        raise ValueError(f"{len(tokens)} tokens but {len(special)} special flags")
    if vmax is None and special.any():
        vmax = full_scale(values[~special], normalization) if (~special).any() else 0.0
    background = colorize(scaled(values, normalization, vmax), cmap).reshape(-1, 3)
    foreground = text_color(background)
    spans = []
    for i, (token, value, bg, fg, grey) in enumerate(zip(tokens, values, background, foreground, special,
                                                        strict=True)):
        shown = number(value, signed=True)
        kind = "token" + (" special" if grey else "") + (" focus" if i == focus else "")
        style = f"background:{SPECIAL_BACKGROUND};color:#000000" if grey else \
            f"background:{hex_color(bg)};color:{hex_color(fg)}"
        title = f"special token (not coloured): {shown}" if grey else shown
        spans.append(f'<span class="{kind}" dir="auto" style="{style}" title="{title}">'
                     f'<span class="word">{escape(token)}</span><span class="value">{shown}</span></span>')
    return Markup('<div class="tokens">' + " ".join(spans) + "</div>")


def legend_html(cmap="bwr", vmax: float | None = None, caption: str = "") -> Markup:
    """The colour scale: a gradient with numbers when ``vmax`` is given, else ``−max |R| … +max |R|``."""
    return scale_html(cmap, vmax, caption)


__all__ = ["legend_html", "scaled", "token_colors", "token_html"]
