"""timm's building blocks as plain modules that the rules and the batch-norm canonizers know.

timm subclasses torch's layers and changes what their forward computes. Each such module is rebuilt
(:class:`SplitTimmBlocks`, split stage) into plain modules computing the same function:

| timm module | canonized as |
|---|---|
| ``Conv2dSame``, ``Conv2dSameExport`` (TF "SAME" padding, from the input size) | ``SamePad2d -> nn.Conv2d`` |
| ``StdConv2d``, ``ScaledStdConv2d`` (+ ``Same``): weight standardization | ``[SamePad2d ->] nn.Conv2d`` |
| ``AvgPool2dSame``, ``MaxPool2dSame`` | ``SamePad2d -> nn.AvgPool2d / nn.MaxPool2d`` |
| ``LayerNorm2d`` (a LayerNorm over the channels) | torchvision's ``LayerNorm2d`` (its view: a channel norm) |
| ``GroupNormAct``, ``GroupNorm1Act``, ``LayerNormAct2d`` (norm + drop + act) | ``Sequential(norm, drop, act)`` |

(the standardized convolutions get the standardized weight, computed once). The batch norms with their
activation inside (``BatchNormAct2d`` & co.) are :mod:`seqlrp.cnn.normact`'s.
Blocks that need nothing: ``DropPath`` / ``DropBlock2d`` (identity in eval), ``SqueezeExcite`` /
``EffectiveSEModule`` (gated products: signal-takes-all), ``GroupNorm1`` (an ``nn.GroupNorm``),
``SelectAdaptivePool2d`` (an average pool and a flatten). timm is never imported here: its classes are looked up
in ``sys.modules``.
"""

from __future__ import annotations

import functools
import math
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.convnext import LayerNorm2d as ChannelLayerNorm

from ..core.copying import shallow_copy, structural_copy
from .batchnorm import check_replaceable


class SamePad2d(nn.Module):
    r"""TensorFlow's "SAME" padding, computed from the input size: per spatial dimension of size :math:`i`,
    :math:`p = \max((\lceil i/s \rceil - 1) s + (k - 1) d + 1 - i, 0)`, :math:`\lfloor p/2 \rfloor` before and
    the rest after, filled with ``value``."""

    def __init__(self, kernel_size, stride, dilation=(1, 1), value: float = 0.0):
        super().__init__()
        pair = nn.modules.utils._pair
        self.kernel_size, self.stride, self.dilation = pair(kernel_size), pair(stride), pair(dilation)
        self.value = value

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        dims = zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation, strict=True)
        for size, k, s, d in reversed(list(dims)):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads, value=self.value)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}, value={self.value}"


def _as(cls: type, module: nn.Module) -> nn.Module:
    """A copy of ``module`` (same attributes and tensors, fresh containers) of class ``cls``."""
    new = object.__new__(cls)
    new.__dict__.update(shallow_copy(module).__dict__)
    return new


def _padded(module: nn.Module, layer: nn.Module, value: float = 0.0) -> nn.Module:
    pad = SamePad2d(module.kernel_size, module.stride, getattr(module, "dilation", 1), value)
    return nn.Sequential(OrderedDict(pad=pad, layer=layer))


def _conv(module: nn.Module, weight: Tensor | None = None) -> nn.Conv2d:
    conv = _as(nn.Conv2d, module)
    parameters = {"weight": module.weight, "bias": module.bias}
    if weight is not None:
        parameters["weight"] = nn.Parameter(weight.detach(), requires_grad=module.weight.requires_grad)
    conv.__dict__["_parameters"] = parameters  # (the gain of ScaledStdConv2d is inside the new weight)
    for key in ("same_pad", "eps", "scale", "gain_init"):
        conv.__dict__.pop(key, None)
    return conv


def _standardized(module: nn.Module, scaled: bool) -> Tensor:
    """The weight the module's forward convolves with: each output channel's weights standardized (biased
    variance, ``eps``), times ``gain * scale`` for the scaled variant."""
    gain = (module.gain * module.scale).view(-1) if scaled else None
    with torch.no_grad():
        return F.batch_norm(module.weight.reshape(1, module.out_channels, -1), None, None, weight=gain,
                            training=True, momentum=0.0, eps=module.eps).reshape_as(module.weight)


def _norm_act(module: nn.Module, norm: nn.Module) -> nn.Sequential:
    parts = OrderedDict(norm=norm)
    for name in ("drop", "act"):
        child = module._modules.get(name)
        if child is not None and type(child) is not nn.Identity:
            parts[name] = structural_copy(child)
    return nn.Sequential(parts)


def _group_norm(module: nn.Module) -> nn.GroupNorm:
    norm = _as(nn.GroupNorm, module)
    norm.__dict__["_modules"] = {}
    return norm


def _channel_layer_norm(module: nn.Module) -> ChannelLayerNorm:
    norm = _as(ChannelLayerNorm, module)
    norm.__dict__["_modules"] = {}
    return norm


_REBUILDS = {
    "timm.layers.conv2d_same.Conv2dSame": lambda m: _padded(m, _conv(m)),
    "timm.layers.conv2d_same.Conv2dSameExport": lambda m: _padded(m, _conv(m)),
    "timm.layers.std_conv.StdConv2d": lambda m: _conv(m, _standardized(m, False)),
    "timm.layers.std_conv.StdConv2dSame": lambda m: (_padded(m, _conv(m, _standardized(m, False)))
                                                     if m.same_pad else _conv(m, _standardized(m, False))),
    "timm.layers.std_conv.ScaledStdConv2d": lambda m: _conv(m, _standardized(m, True)),
    "timm.layers.std_conv.ScaledStdConv2dSame": lambda m: (_padded(m, _conv(m, _standardized(m, True)))
                                                           if m.same_pad else _conv(m, _standardized(m, True))),
    "timm.layers.pool2d_same.AvgPool2dSame": lambda m: _padded(m, _as(nn.AvgPool2d, m)),
    "timm.layers.pool2d_same.MaxPool2dSame": lambda m: _padded(m, _as(nn.MaxPool2d, m), value=-math.inf),
    "timm.layers.norm.LayerNorm2d": _channel_layer_norm,
    "timm.layers.norm_act.GroupNormAct": lambda m: _norm_act(m, _group_norm(m)),
    "timm.layers.norm_act.GroupNorm1Act": lambda m: _norm_act(m, _group_norm(m)),
    "timm.layers.norm_act.LayerNormAct2d": lambda m: _norm_act(m, _channel_layer_norm(m)),
}


def timm_rebuilds() -> dict[type, object]:
    """Exact timm class -> rebuild, for the classes of the imported timm (none when timm is not imported)."""
    return _rebuilds_of(sys.modules.get("timm"))


@functools.lru_cache(maxsize=1)
def _rebuilds_of(timm: object) -> dict[type, object]:
    """:func:`timm_rebuilds` for the imported ``timm`` module (looked up once per import of timm; importing timm
    imports the modules of every class in ``_REBUILDS``)."""
    out = {}
    for qualified, rebuild in _REBUILDS.items():
        module_name, _, name = qualified.rpartition(".")
        module = sys.modules.get(module_name)
        cls = getattr(module, name, None) if module is not None else None
        if isinstance(cls, type):
            out[cls] = rebuild
    return out


#: timm classes whose forward calls every child module whole (never a part of a sequential child, never a child's
#: parameters), with the (conv, norm) child pairs it runs back to back (``x = self.conv(x); x = self.norm(x)``: the
#: conv's output feeds only the norm). Read from the timm 1.0 sources; exact classes only, and only while timm's
#: version is 1.0.x (another version is traced instead). ``grad_checkpointing`` must be off (checkpoint_seq runs
#: the blocks' children itself).
_WHOLE = {
    "timm.models.efficientnet.EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
    "timm.models.mobilenetv3.MobileNetV3": (("conv_stem", "bn1"), ("conv_head", "norm_head")),
    "timm.models._efficientnet_blocks.ConvBnAct": (("conv", "bn1"),),
    "timm.models._efficientnet_blocks.DepthwiseSeparableConv": (("conv_s2d", "bn_s2d"), ("conv_dw", "bn1"),
                                                                ("conv_pw", "bn2")),
    "timm.models._efficientnet_blocks.InvertedResidual": (("conv_s2d", "bn_s2d"), ("conv_pw", "bn1"),
                                                          ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
    "timm.models._efficientnet_blocks.EdgeResidual": (("conv_exp", "bn1"), ("conv_pwl", "bn2")),
    "timm.models._efficientnet_blocks.SqueezeExcite": (),
    "timm.layers.adaptive_avgmax_pool.SelectAdaptivePool2d": (),
}


def timm_fusion_pairs(module: nn.Module) -> tuple[tuple[str, str], ...] | None:
    """The (conv, norm) child pairs of a timm module whose forward calls its children whole (``_WHOLE``), or None
    when ``module`` is no such module (another class, another timm version, gradient checkpointing on)."""
    cls = type(module)
    if not cls.__module__.startswith("timm."):
        return None
    pairs = _class_pairs(cls)
    if pairs is None or module.__dict__.get("grad_checkpointing", False) is not False:
        return None
    if not str(getattr(sys.modules.get("timm"), "__version__", "")).startswith("1.0."):
        return None
    return pairs


@functools.lru_cache(maxsize=256)
def _class_pairs(cls: type) -> tuple[tuple[str, str], ...] | None:
    """The pairs of ``_WHOLE`` for the timm class ``cls`` (the class timm's module holds under that name), else
    None."""
    pairs = _WHOLE.get(f"{cls.__module__}.{cls.__qualname__}")
    if pairs is None or getattr(sys.modules.get(cls.__module__), cls.__qualname__, None) is not cls:
        return None
    return pairs


def rebuild_timm_block(module: nn.Module) -> nn.Module | None:
    """``module`` rebuilt as plain modules (the table above), or None when it is no such timm block."""
    if not type(module).__module__.startswith("timm."):
        return None
    rebuild = timm_rebuilds().get(type(module))
    if rebuild is None:
        return None
    check_replaceable(module)
    return rebuild(module)
