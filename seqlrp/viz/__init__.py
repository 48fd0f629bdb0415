"""Visualization: image heatmaps, token HTML, the self-contained HTML report."""

from .colormaps import BWR, COLDNHOT, colorize, normalize
from .image import grid, heatmap, overlay, perturbation_figure, png_data_uri, relevance_histogram, save_png
from .report import Report
from .text import legend_html, token_html

__all__ = [
    "BWR",
    "COLDNHOT",
    "Report",
    "colorize",
    "grid",
    "heatmap",
    "legend_html",
    "normalize",
    "overlay",
    "perturbation_figure",
    "png_data_uri",
    "relevance_histogram",
    "save_png",
    "token_html",
]
