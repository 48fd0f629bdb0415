"""seqlrp: Layer-wise Relevance Propagation for PyTorch -- LSTM/GRU text classifiers and CNNs.

>>> import torch, seqlrp
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
>>> explanation = seqlrp.explain(model, torch.randn(2, 4), composite=seqlrp.ZeroEverywhere())
"""

import importlib as _importlib

# Imported on first use (PEP 562), so that ``seqlrp --version`` / ``--help`` answer without importing torch.
# The first public name used imports every subpackage below, in this order, as ``import seqlrp`` did before
# (their registrations included); then each name is looked up in the module that defines it.
_SUBPACKAGES = ("baselines", "cnn", "dataset", "evaluate", "lstm", "recurrent", "rules", "transformers", "viz")
_NAMES = {
    "Attribution": ".attribution", "quantus_explain": ".attribution",
    **dict.fromkeys(("FIRST", "Composite", "Coverage", "CoverageWarning", "EpsilonEverywhere", "Explanation",
                     "NoRuleError", "ZeroEverywhere", "explain", "groups"), ".core"),
    "explain_dataset": ".dataset", "report_dataset": ".dataset",
    "TextExplanation": ".lstm", "explain_text": ".lstm",
}


def _load_all() -> None:
    for name in _SUBPACKAGES:
        _importlib.import_module(f".{name}", __name__)


def __getattr__(name: str):
    if name in _NAMES or name in _SUBPACKAGES or name in ("core", "attribution"):
        _load_all()
        value = getattr(_importlib.import_module(_NAMES.get(name, f".{name}"), __name__), name) \
            if name in _NAMES else _importlib.import_module(f".{name}", __name__)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
    "recurrent",
    "report_dataset",
    "rules",
    "transformers",
    "viz",
]
