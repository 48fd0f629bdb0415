"""The LRP rules. Each module holds one rule family; importing this package registers them."""

from .alpha_beta import AlphaBeta, ZPlus
from .base import Rule
from .epsilon import Epsilon, Zero
from .gamma import Gamma
from .half_product import HalfProduct
from .passthrough import Pass, WinnerTakesAll
from .products import SignalTakesAll
from .wsquare import Flat, WSquare
from .zbox import ZBox

__all__ = [
    "AlphaBeta",
    "Epsilon",
    "Flat",
    "Gamma",
    "HalfProduct",
    "Pass",
    "Rule",
    "SignalTakesAll",
    "WSquare",
    "WinnerTakesAll",
    "ZBox",
    "ZPlus",
    "Zero",
]
