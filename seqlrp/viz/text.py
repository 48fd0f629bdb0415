"""Tokens colored by relevance, as safe HTML (every token escaped), with their values on demand."""

from __future__ import annotations

import numpy as np
import torch
from markupsafe import Markup, escape

from .colormaps import colorize, hex_color, scaled, text_color
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


def token_html(tokens: list[str], relevance, cmap="bwr", normalization: str = "absmax",
               focus: int | None = None, vmax: float | None = None) -> Markup:
    """``<span class="token">`` per token: relevance as background, the value in a tooltip and below the word.

    Tokens are HTML-escaped (``<script>`` shows as text), keep their unicode, and carry ``dir="auto"`` so
    right-to-left words render right; the container wraps long documents. The text colour is black or
    white, whichever contrasts more with the background (WCAG AA, >= 4.5:1, for every colour). The value
    (``<span class="value">``) is hidden until the report's "show values" toggle is on.
    ``focus``: the index of a token to outline (class ``token focus``). ``vmax``: the relevance drawn at
    full colour (a shared scale); ``None``: ``max |R|`` of these tokens.
    """
    values = _values(relevance)
    if len(tokens) != len(values):
        raise ValueError(f"{len(tokens)} tokens but {len(values)} relevance values")
    background = colorize(scaled(values, normalization, vmax), cmap).reshape(-1, 3)
    foreground = text_color(background)
    spans = [
        f'<span class="token{" focus" if i == focus else ""}" dir="auto" '
        f'style="background:{hex_color(bg)};color:{hex_color(fg)}" title="{number(value, signed=True)}">'
        f'<span class="word">{escape(token)}</span><span class="value">{number(value, signed=True)}</span></span>'
        for i, (token, value, bg, fg) in enumerate(zip(tokens, values, background, foreground, strict=True))
    ]
    return Markup('<div class="tokens">' + " ".join(spans) + "</div>")


def legend_html(cmap="bwr", vmax: float | None = None, caption: str = "") -> Markup:
    """The colour scale: a gradient with numbers when ``vmax`` is given, else ``−max |R| … +max |R|``."""
    return scale_html(cmap, vmax, caption)


__all__ = ["legend_html", "scaled", "token_colors", "token_html"]
