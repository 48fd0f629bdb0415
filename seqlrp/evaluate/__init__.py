"""Faithfulness evaluation: perturbation curves, AOPC, ground-truth metrics and explainer comparisons."""

from .aopc import Summary, aopc, lerf_morf_gap, summarize
from .compare import compare_ground_truth, compare_images, compare_text, format_table
from .explainers import image_explainers, random_explainer
from .ground_truth import relevance_mass_accuracy, relevance_rank_accuracy
from .perturbation import region_perturbation, replacement_image, token_perturbation

__all__ = ["Summary", "aopc", "compare_ground_truth", "compare_images", "compare_text", "format_table",
           "image_explainers", "lerf_morf_gap", "random_explainer", "region_perturbation", "relevance_mass_accuracy",
           "relevance_rank_accuracy", "replacement_image", "summarize", "token_perturbation"]
