"""Type groups for composites: any convolution, any dense layer, any activation, ..."""

from .norms import NORMS
from .views import ACTIVATIONS, AVG_POOLS, CONVOLUTIONS, DENSE, MAX_POOLS, ROUTING, WEIGHTED

__all__ = ["ACTIVATIONS", "AVG_POOLS", "CONVOLUTIONS", "DENSE", "MAX_POOLS", "NORMS", "ROUTING", "WEIGHTED"]
