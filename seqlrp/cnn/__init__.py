"""CNN side: canonization of torchvision ResNet/DenseNet/VGG, layers, composite presets."""

from .canonize import CanonizationError, Concat, canonize
from .composites import (
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonOnly,
    EpsilonPlus,
    EpsilonPlusFlat,
    GammaSchedule,
    bounds_from_normalization,
)
from .layers import ChannelAffine, Sum, TensorBiasedConv2d, TensorBiasedLinear, ThreshReLU

__all__ = [
    "CanonizationError",
    "ChannelAffine",
    "Concat",
    "EpsilonAlpha2Beta1",
    "EpsilonGammaBox",
    "EpsilonOnly",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "GammaSchedule",
    "Sum",
    "TensorBiasedConv2d",
    "TensorBiasedLinear",
    "ThreshReLU",
    "bounds_from_normalization",
    "canonize",
]
