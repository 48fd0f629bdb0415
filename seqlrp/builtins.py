"""Every built-in registration, in one place: rules, layer views, handlers, deterministic layers.

Nothing registers itself on import: the rule classes, views and handlers are plain definitions, and
:func:`register_builtins` (called once by ``import seqlrp``) lists them here, explicitly. A module's view and
handler are those of the most specific registered class in its MRO, so the order below does not matter.

A user adds to the same registries with one line each:

- a rule: ``seqlrp.rules.register("my_rule")(MyRule)`` (or the class decorator);
- a layer view: ``seqlrp.core.register_view(MyLayer)(seqlrp.core.views.DenseView)``;
- a module handler (a layer that needs several rule applications): ``seqlrp.core.register_handler(MyRNN)(fn)``.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.convnext import LayerNorm2d

from .cnn import layers as cnn_layers
from .core import attention, norms, ops, registry, views
from .core import rules as core_rules
from .core.session import register_handler
from .lstm import recurrent

#: the built-in rule classes (each names itself: ``cls.name``)
RULES: tuple[type, ...] = (  # (one a line: a new rule is one added line)
    core_rules.Epsilon,
    core_rules.Zero,
    core_rules.Gamma,
    core_rules.AlphaBeta,
    core_rules.ZPlus,
    core_rules.ZBox,
    core_rules.WSquare,
    core_rules.Flat,
    core_rules.Pass,
    core_rules.WinnerTakesAll,
    core_rules.SignalTakesAll,
    core_rules.HalfProduct,
    core_rules.SoftmaxTaylor,
    core_rules.Uniform,
    core_rules.Identity,
    cnn_layers.ActivePass,
)

#: module class -> view class
VIEWS: dict[type, type] = {
    **dict.fromkeys(views.DENSE, views.DenseView),
    **dict.fromkeys(views.CONVOLUTIONS, views.ConvView),
    **dict.fromkeys(views.AVG_POOLS, views.PoolView),
    **dict.fromkeys(views.MAX_POOLS, views.RouteView),
    **dict.fromkeys(views.ACTIVATIONS, views.ElementwiseView),
    **norms.NORM_VIEWS,
    ops.Sum: ops.SumView,
    ops.Product: ops.ProductView,
    ops.Contraction: ops.ContractionView,
    LayerNorm2d: norms.ChannelNormView,  # (torchvision's ConvNeXt: a LayerNorm over the channels)
    cnn_layers.ThreshReLU: cnn_layers.ThreshReLUView,
    cnn_layers.TensorBiasedConv2d: cnn_layers.TensorBiasedConvView,
    cnn_layers.TensorBiasedLinear: cnn_layers.TensorBiasedLinearView,
    cnn_layers.ChannelAffine: cnn_layers.ChannelAffineView,
}

#: module classes whose forward needs a handler (several rule applications per call)
HANDLERS: dict[tuple[type, ...], object] = {
    (nn.LSTM, nn.GRU): recurrent.recurrent_handler,
    (nn.MultiheadAttention,): attention.attention_handler,
}

#: exact classes whose forward draws no random numbers in eval mode (not Contraction: it runs a function it
#: was given)
DETERMINISTIC: tuple[type, ...] = (
    *views.DENSE, *views.CONVOLUTIONS, *views.AVG_POOLS, *views.MAX_POOLS, *views.ACTIVATIONS, *norms.NORMS,
    ops.Sum, ops.Product, ops.Affine, LayerNorm2d, cnn_layers.ThreshReLU, cnn_layers.TensorBiasedConv2d,
    cnn_layers.TensorBiasedLinear, cnn_layers.ChannelAffine,
)


def register_builtins() -> None:
    """Register every built-in rule, view, handler and deterministic class (idempotent)."""
    for cls in RULES:
        if registry.available_class(cls.name) is not cls:
            registry.register(cls.name)(cls)
    for module_class, view in VIEWS.items():
        views.register_view(module_class)(view)
    for types, handler in HANDLERS.items():
        register_handler(*types)(handler)
    views.deterministic(*DETERMINISTIC)
