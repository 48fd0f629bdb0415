"""Image heatmaps: relevance -> RGB, overlays, grids, PNG bytes/files, relevance histograms."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..files import atomic_write  # noqa: E402
from .colormaps import colorize, full_scale, get_cmap, scaled  # noqa: E402


def _as_map(relevance) -> np.ndarray:
    """(C, H, W) -> (H, W) by summing channels; (H, W) stays."""
    values = relevance.detach().cpu().double().numpy() if isinstance(relevance, torch.Tensor) else np.asarray(relevance)
    if values.ndim == 3:
        values = values.sum(0)
    if values.ndim != 2:
        raise ValueError(f"expected relevance of shape (C, H, W) or (H, W), got {values.shape}")
    return values


def heat_scale(relevance, normalization: str = "absmax", percentile: float = 99.5) -> float:
    """The relevance :func:`heatmap` draws at full colour: ``max |R|`` (``absmax``) or that percentile of ``|R|``."""
    return full_scale(_as_map(relevance), normalization, percentile)


def heatmap(relevance, cmap="bwr", normalization: str = "absmax", percentile: float = 99.5,
            vmax: float | None = None) -> np.ndarray:
    """Relevance of one image -> an RGB uint8 array ``(H, W, 3)``, symmetric around 0 (white/black = 0).

    ``vmax``: the relevance drawn at full colour (larger values clipped), e.g. one scale shared by several
    heatmaps; ``None``: from ``normalization`` (see :func:`heat_scale`).
    """
    return colorize(scaled(_as_map(relevance), normalization, vmax, percentile), cmap)


def picture_rgb(image) -> np.ndarray:
    """An input image as ``(H, W, 3)`` floats in [0, 1]: ``(C, H, W)``, ``(H, W, C)`` or ``(H, W)``, any range,
    rescaled by its own min and max (a constant image is black)."""
    picture = image.detach().cpu().double().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, float)
    if picture.ndim == 3:
        picture = picture.transpose(1, 2, 0) if picture.shape[0] in (1, 3) else picture
        if picture.shape[-1] == 1:
            picture = picture[..., 0]
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, -1)
    low, high = picture.min(), picture.max()
    return (picture - low) / (high - low) if high > low else np.zeros_like(picture)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` floats in [0, 1] -> uint8."""
    return (rgb * 255).round().clip(0, 255).astype(np.uint8)


def overlay(image, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend a heatmap over the input image (``(C, H, W)`` or ``(H, W)``, any range: rescaled to [0, 1])."""
    return to_uint8((1 - alpha) * picture_rgb(image) + alpha * heat.astype(np.float64) / 255.0)


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    plt.imsave(buffer, rgb, format="png")
    return buffer.getvalue()


def png_data_uri(rgb: np.ndarray) -> str:
    """``data:image/png;base64,...`` for embedding in a self-contained HTML file."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    return atomic_write(path, png_bytes(rgb))


def grid(relevances, titles=None, cmap="bwr", ncols: int = 4, normalization: str = "absmax"):
    """A matplotlib figure with one heatmap per explanation, each with its own colorbar in relevance units.

    Each map has a per-example scale (full colour = its ``max |R|``, or the percentile with
    ``normalization="percentile"``); the colorbar's five ticks run from ``-vmax`` to ``+vmax``.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    colormap = get_cmap(cmap)
    scales = [heat_scale(r, normalization) for r in relevances]
    maps = [heatmap(r, cmap, vmax=vmax) for r, vmax in zip(relevances, scales, strict=True)]
    rows = max(1, -(-len(maps) // ncols))
    fig, axes = plt.subplots(rows, ncols, figsize=(2.6 * ncols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (rgb, vmax) in enumerate(zip(maps, scales, strict=True)):
        axes.flat[i].imshow(rgb)
        if titles is not None:
            axes.flat[i].set_title(str(titles[i]), fontsize=8)
        vmax = vmax if vmax > 0 else 1.0  # an all-zero map: white, on a unit scale
        bar = fig.colorbar(ScalarMappable(Normalize(-vmax, vmax), colormap), ax=axes.flat[i], fraction=0.046,
                           pad=0.04, ticks=np.linspace(-vmax, vmax, 5))
        bar.ax.tick_params(labelsize=6)
        bar.ax.yaxis.get_offset_text().set_fontsize(6)
    fig.tight_layout()
    return fig


def figure_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def relevance_histogram(values, labels=None, bins: int = 50):
    """Seaborn histogram of relevance values (one or several groups)."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(5, 3))
    groups = values if isinstance(values, (list, tuple)) else [values]
    for i, group in enumerate(groups):
        data = group.detach().cpu().double().numpy().ravel() if isinstance(group, torch.Tensor) else np.ravel(group)
        sns.histplot(data, bins=bins, ax=ax, element="step", fill=False,
                     label=None if labels is None else labels[i])
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("relevance")
    if labels is not None:
        ax.legend()
    fig.tight_layout()
    return fig


def perturbation_figure(curves: dict, title: str = "", xlabel: str = "perturbation step"):
    """Seaborn line plot of mean perturbation curves: ``{label: (B, L + 1) tensor}``, with 95% bands."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for label, curve in curves.items():
        values = curve.detach().cpu().double().numpy()
        steps = np.tile(np.arange(values.shape[1]), values.shape[0])
        sns.lineplot(x=steps, y=values.ravel(), ax=ax, label=label, errorbar=("ci", 95))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("score of the explained class")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
