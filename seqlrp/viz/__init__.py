"""Visualization: image heatmaps, token HTML, colour scales, the self-contained HTML report, notebook views."""

from .colormaps import BWR, COLDNHOT, colorize, contrast_ratio, normalize, text_color
from .image import grid, heat_scale, heatmap, overlay, perturbation_figure, png_data_uri, relevance_histogram, save_png
from .notebook import explanation_html, show
from .numbers import number
from .report import Report
from .scale import scale_html
from .text import legend_html, token_html

__all__ = [
    "BWR",
    "COLDNHOT",
    "Report",
    "colorize",
    "contrast_ratio",
    "explanation_html",
    "grid",
    "heat_scale",
    "heatmap",
    "legend_html",
    "normalize",
    "number",
    "overlay",
    "perturbation_figure",
    "png_data_uri",
    "relevance_histogram",
    "save_png",
    "scale_html",
    "show",
    "text_color",
    "token_html",
]
