"""Public face of the rule registry: ``seqlrp.rules.register/get/available`` and the rule classes."""

from .core.registry import available, get, register, resolve
from .core.rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Pass,
    Rule,
    SignalTakesAll,
    WinnerTakesAll,
    WSquare,
    ZBox,
    Zero,
    ZPlus,
)

__all__ = [
    "AlphaBeta",
    "Epsilon",
    "Flat",
    "Gamma",
    "Pass",
    "Rule",
    "SignalTakesAll",
    "WSquare",
    "WinnerTakesAll",
    "ZBox",
    "ZPlus",
    "Zero",
    "available",
    "get",
    "register",
    "resolve",
]
