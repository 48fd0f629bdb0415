"""CNN side: canonization of torchvision ResNet/DenseNet/VGG, layers, composite presets."""

from .canonize import CanonizationError, CanonizationWarning, Concat, canonize
from .canonizer import Canonizer, Place
from .canonizers import (
    DEFAULT_CANONIZERS,
    ClassRebuild,
    KeepAsAffine,
    ProducerFusion,
    SequentialFusion,
    SplitNormAct,
    SplitTimmBlocks,
    ThreshReLUFusion,
    TimmBlockFusion,
)
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
    "DEFAULT_CANONIZERS",
    "CanonizationError",
    "CanonizationWarning",
    "Canonizer",
    "ClassRebuild",
    "KeepAsAffine",
    "Place",
    "ProducerFusion",
    "SequentialFusion",
    "SplitNormAct",
    "SplitTimmBlocks",
    "ThreshReLUFusion",
    "TimmBlockFusion",
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
