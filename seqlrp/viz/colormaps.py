"""Diverging colormaps symmetric around 0, and symmetric normalization of relevance."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.colors import LinearSegmentedColormap

#: anchors (position in [-1, 1], RGB): mirrored around 0, so the maps are symmetric by construction
ANCHORS = {
    # blue (negative) - white (0) - red (positive)
    "bwr": [(-1.0, (0, 0, 255)), (0.0, (255, 255, 255)), (1.0, (255, 0, 0))],
    # cyan-blue-black-red-yellow (the LRP toolbox's "coldnhot"): 0 is black
    "coldnhot": [(-1.0, (0, 255, 255)), (-0.5, (0, 0, 255)), (0.0, (0, 0, 0)), (0.5, (255, 0, 0)),
                 (1.0, (255, 255, 0))],
}
BWR = LinearSegmentedColormap.from_list("seqlrp_bwr", [((p + 1) / 2, np.array(c) / 255) for p, c in ANCHORS["bwr"]])
COLDNHOT = LinearSegmentedColormap.from_list(
    "seqlrp_coldnhot", [((p + 1) / 2, np.array(c) / 255) for p, c in ANCHORS["coldnhot"]])

COLORMAPS = {"bwr": BWR, "coldnhot": COLDNHOT}


def get_cmap(name: str | matplotlib.colors.Colormap):
    if isinstance(name, matplotlib.colors.Colormap):
        return name
    try:
        return COLORMAPS[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}; choose one of {sorted(COLORMAPS)} or pass a Colormap") from None


def full_scale(relevance, method: str = "absmax", percentile: float = 99.5) -> float:
    """The relevance drawn at full colour: ``max |R|`` (``absmax``) or that percentile of ``|R|``; 0 when empty.

    Non-finite relevance cannot be drawn: ``ValueError``.
    """
    values = np.asarray(relevance, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("relevance contains NaN or Inf; cannot draw it")
    magnitude = np.abs(values)
    if method == "absmax":
        return float(magnitude.max()) if magnitude.size else 0.0
    if method == "percentile":
        return float(np.percentile(magnitude, percentile)) if magnitude.size else 0.0
    raise ValueError(f"normalization must be 'absmax' or 'percentile', got {method!r}")


def scaled(relevance, normalization: str = "absmax", vmax: float | None = None,
           percentile: float = 99.5) -> np.ndarray:
    """``relevance`` in [-1, 1]: divided by ``vmax`` (clipped) when given, else by :func:`full_scale`.

    An all-zero map (or ``vmax <= 0``) stays all zero.
    """
    values = np.asarray(relevance, dtype=np.float64)
    if vmax is None:
        vmax = full_scale(values, normalization, percentile)
    elif not np.isfinite(values).all():
        raise ValueError("relevance contains NaN or Inf; cannot draw it")
    return np.zeros_like(values) if vmax <= 0 else np.clip(values / vmax, -1.0, 1.0)


def normalize(relevance, method: str = "absmax", percentile: float = 99.5) -> np.ndarray:
    """Scale relevance to [-1, 1] symmetrically around 0 (0 stays 0, signs are kept).

    ``absmax``: divide by max |R|. ``percentile``: divide by the given percentile of |R| and clip.
    An all-zero map stays all zero.
    """
    return scaled(relevance, method, percentile=percentile)


def colorize(normalized: np.ndarray, cmap="bwr") -> np.ndarray:
    """Map values in [-1, 1] to RGB uint8 (0 -> the colormap's middle).

    The named maps interpolate their anchors exactly (no 256-entry lookup table, whose rounding
    would make ``+v`` and ``-v`` differ); any other matplotlib Colormap is sampled as usual.
    """
    values = np.clip(np.asarray(normalized, dtype=np.float64), -1.0, 1.0)
    name = next((k for k, v in COLORMAPS.items() if v is cmap), cmap if isinstance(cmap, str) else None)
    if name in ANCHORS:
        # both sides interpolated at |v| with the same arithmetic: exactly mirrored colours
        magnitude = np.abs(values)
        positive = sorted((p, c) for p, c in ANCHORS[name] if p >= 0)
        negative = sorted((-p, c) for p, c in ANCHORS[name] if p <= 0)
        channels = [np.where(values >= 0,
                             np.interp(magnitude, [p for p, _ in positive], [c[i] for _, c in positive]),
                             np.interp(magnitude, [p for p, _ in negative], [c[i] for _, c in negative]))
                    for i in range(3)]
        return np.stack(channels, -1).round().astype(np.uint8)
    rgba = get_cmap(cmap)((values + 1.0) / 2.0)
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def relative_luminance(rgb) -> np.ndarray:
    """WCAG 2 relative luminance of sRGB colours (``(..., 3)`` uint8 or 0-255 values), in [0, 1]."""
    channels = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(first, second) -> np.ndarray:
    """WCAG 2 contrast ratio between two sRGB colours (1 to 21; AA for normal text needs >= 4.5)."""
    a, b = relative_luminance(first), relative_luminance(second)
    return (np.maximum(a, b) + 0.05) / (np.minimum(a, b) + 0.05)


BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def text_color(background) -> np.ndarray:
    """Black or white, whichever contrasts more with each background colour (``(..., 3)`` -> ``(..., 3)`` uint8).

    One of the two always reaches at least 4.58:1 (the worst case is a background of luminance ~0.18), so
    text on any colour of any colormap passes WCAG AA (4.5:1).
    """
    background = np.asarray(background)
    black_wins = contrast_ratio(background, BLACK) >= contrast_ratio(background, WHITE)
    return np.where(black_wins[..., None], np.array(BLACK, np.uint8), np.array(WHITE, np.uint8)).astype(np.uint8)


def hex_color(rgb) -> str:
    """``(r, g, b)`` -> ``#rrggbb``."""
    r, g, b = (int(c) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"
