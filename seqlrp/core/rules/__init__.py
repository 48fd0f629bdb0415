"""The LRP rules. Each module holds one rule family; importing this package registers them."""

from .alpha_beta import AlphaBeta, ZPlus
from .base import Rule
from .epsilon import Epsilon, Zero
from .gamma import Gamma
from .half_product import HalfProduct
from .identity import Identity
from .passthrough import Pass, WinnerTakesAll
from .products import SignalTakesAll
from .softmax import SoftmaxTaylor
from .uniform import Uniform
from .wsquare import Flat, WSquare
from .zbox import ZBox

__all__ = [
    "AlphaBeta",
    "Epsilon",
    "Flat",
    "Gamma",
    "HalfProduct",
    "Identity",
    "Pass",
    "Rule",
    "SignalTakesAll",
    "SoftmaxTaylor",
    "Uniform",
    "WSquare",
    "WinnerTakesAll",
    "ZBox",
    "ZPlus",
    "Zero",
]
