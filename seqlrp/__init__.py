"""seqlrp: Layer-wise Relevance Propagation for PyTorch -- LSTM/GRU text classifiers and CNNs.

>>> import torch, seqlrp
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
>>> explanation = seqlrp.explain(model, torch.randn(2, 4), composite=seqlrp.ZeroEverywhere())
"""

from . import baselines, rules
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

__version__ = "0.1.0"

__all__ = ["FIRST", "Composite", "Coverage", "CoverageWarning", "EpsilonEverywhere", "Explanation", "NoRuleError",
           "ZeroEverywhere", "baselines", "explain", "groups", "rules"]
