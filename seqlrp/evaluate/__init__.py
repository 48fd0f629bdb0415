"""Faithfulness evaluation: perturbation curves, AOPC, and explainer comparisons."""

from .aopc import Summary, aopc, lerf_morf_gap, summarize
from .compare import compare_images, compare_text, format_table, random_explainer
from .perturbation import region_perturbation, token_perturbation

__all__ = ["Summary", "aopc", "compare_images", "compare_text", "format_table", "lerf_morf_gap",
           "random_explainer", "region_perturbation", "summarize", "token_perturbation"]
