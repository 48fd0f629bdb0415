"""Tokens colored by relevance, as safe HTML (every token escaped)."""

from __future__ import annotations

import numpy as np
import torch
from markupsafe import Markup, escape

from .colormaps import colorize, normalize


def token_colors(relevance, cmap="bwr", normalization: str = "absmax") -> list[str]:
    values = relevance.detach().cpu().double().numpy() if isinstance(relevance, torch.Tensor) else np.asarray(relevance)
    rgb = colorize(normalize(values, normalization), cmap)
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb.reshape(-1, 3)]


def token_html(tokens: list[str], relevance, cmap="bwr", normalization: str = "absmax",
               focus: int | None = None) -> Markup:
    """``<span class="token">`` per token with its relevance as background and tooltip.

    Tokens are HTML-escaped (``<script>`` shows as text), keep their unicode, and carry
    ``dir="auto"`` so right-to-left words render right; the container wraps long documents.
    ``focus``: the index of a token to outline (class ``token focus``).
    """
    values = relevance.detach().cpu().double().numpy() if isinstance(relevance, torch.Tensor) else np.asarray(relevance)
    if len(tokens) != len(values):
        raise ValueError(f"{len(tokens)} tokens but {len(values)} relevance values")
    colors = token_colors(values, cmap, normalization)
    spans = [
        f'<span class="token{" focus" if i == focus else ""}" dir="auto" style="background:{color}" '
        f'title="{value:+.4g}">{escape(token)}</span>'
        for i, (token, value, color) in enumerate(zip(tokens, values, colors, strict=True))
    ]
    return Markup('<div class="tokens">' + " ".join(spans) + "</div>")


def legend_html(cmap="bwr") -> Markup:
    """A small horizontal legend: negative - 0 - positive."""
    stops = np.linspace(-1, 1, 11)
    cells = "".join(f'<span style="background:{c}"></span>' for c in token_colors(stops, cmap))
    return Markup(f'<div class="legend"><small>negative</small>{cells}<small>positive</small></div>')
