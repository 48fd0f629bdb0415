"""seqlrp: Layer-wise Relevance Propagation for PyTorch -- LSTM/GRU text classifiers and CNNs.

>>> import torch, seqlrp
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
>>> explanation = seqlrp.explain(model, torch.randn(2, 4), composite=seqlrp.ZeroEverywhere())
"""

from . import baselines, cnn, dataset, evaluate, lstm, rules, transformers, viz
from .attribution import Attribution, quantus_explain
from .core import (
    FIRST,
    Composite,
    Coverage,
    CoverageWarning,
    EpsilonEverywhere,
    Explanation,
    NoRuleError,
    ZeroEverywhere,
    explain,
    groups,
)
from .dataset import explain_dataset, report_dataset
from .lstm import TextExplanation, explain_text

__version__ = "0.1.0"

__all__ = [
    "Attribution",
    "Composite",
    "Coverage",
    "CoverageWarning",
    "EpsilonEverywhere",
    "Explanation",
    "FIRST",
    "NoRuleError",
    "TextExplanation",
    "ZeroEverywhere",
    "baselines",
    "cnn",
    "dataset",
    "evaluate",
    "explain",
    "explain_dataset",
    "explain_text",
    "groups",
    "lstm",
    "quantus_explain",
    "report_dataset",
    "rules",
    "transformers",
    "viz",
]
