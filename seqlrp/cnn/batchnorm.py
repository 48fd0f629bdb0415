"""The batch-norm algebra of canonization: a batch norm in eval mode is a per-channel affine map.

* :func:`bn_affine` -- ``BN(x) = scale * x + shift``, ``scale = γ / sqrt(var + eps)``,
  ``shift = β - μ · scale``.
* :func:`fuse` -- ``BN(layer(x))`` as one new Conv/Linear: ``w' = w · scale``, ``b' = b · scale + shift``.
* :func:`threshold` -- ``ReLU(BN(x)) = scale * ThreshReLU(x) + shift`` (the ThreshReLU theorem, docs/cnn.md),
  and :func:`threshold_and_fuse`, which fuses the affine into the convolution that follows.

The checks every canonizer runs before rebuilding a user's module (:func:`check_replaceable`: no hooks, no
method replaced on the instance; :func:`expect`: the exact class a canonizer knows) live here too, with the
error they raise, :class:`CanonizationError`. Every function reads the user's modules and builds new tensors.
"""

from __future__ import annotations

import inspect
from contextvars import ContextVar
from types import FunctionType

import torch
from torch import Tensor, nn

from ..core.copying import shallow_copy
from .layers import TensorBiasedConv2d, ThreshReLU

BN = nn.modules.batchnorm._BatchNorm


class CanonizationError(RuntimeError):
    """The model could not be canonized (names the modules) or the canonized model differs."""


class CanonizationWarning(UserWarning):
    """Canonization could not follow the forward (no trace) and fell back (names the modules and the fallback)."""


def bn_affine(bn: BN) -> tuple[Tensor, Tensor]:
    """``BN(x) = scale * x + shift`` per channel (eval mode, running statistics)."""
    if not bn.track_running_stats or bn.running_mean is None:
        raise CanonizationError(f"{type(bn).__name__} without running statistics cannot be fused")
    known = AFFINES.get()
    if known is not None:
        found = known.get(id(bn.running_var))
        if found is not None and _same(found[0], _sources(bn)):
            return found[1], found[2]
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    scale = gamma / std
    return scale.detach(), (beta - bn.running_mean * scale).detach()


def _sources(bn: BN) -> tuple:
    """What :func:`bn_affine` reads: the four tensors (by identity) and eps."""
    return bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps


def _same(a: tuple, b: tuple) -> bool:
    return all(x is y for x, y in zip(a[:4], b[:4], strict=True)) and a[4] == b[4]


def affines(norms: list[BN]) -> dict[int, tuple]:
    """:func:`bn_affine` of every affine batch norm of ``norms`` with running statistics, each step one ``_foreach``
    op over all of them (the same element-wise arithmetic, so the same numbers, without ~20 µs of Python per batch
    norm); keyed by the id of the running variance, with the sources to check against. For :data:`AFFINES`."""
    by_device: dict[torch.device, list[BN]] = {}
    for bn in norms:
        if bn.affine and bn.track_running_stats and bn.running_var is not None:
            by_device.setdefault(bn.running_var.device, []).append(bn)
    out = {}
    for group in by_device.values():  # (a foreach op takes the tensors of one device)
        with torch.no_grad():
            std = torch._foreach_add([bn.running_var for bn in group], [bn.eps for bn in group])
            torch._foreach_sqrt_(std)
            scale = torch._foreach_div([bn.weight for bn in group], std)
            shift = torch._foreach_sub([bn.bias for bn in group],
                                       torch._foreach_mul([bn.running_mean for bn in group], scale))
        out.update({id(bn.running_var): (_sources(bn), a.detach(), b.detach())
                    for bn, a, b in zip(group, scale, shift, strict=True)})
    return out


#: the affines of the batch norms of the model being canonized, computed together by :func:`affines` (set by
#: :func:`seqlrp.cnn.canonize`; :func:`bn_affine` computes any other afresh)
AFFINES: ContextVar[dict[int, tuple] | None] = ContextVar("seqlrp_bn_affines", default=None)


class ModuleNames:
    """The qualified names of ``model``'s modules by id (the model itself: ``root``), listed on the first lookup:
    only messages read them, and the model is not changed while they are in use."""

    def __init__(self, model: nn.Module, root: str = ""):
        self.model, self.root, self.names = model, root, None

    def get(self, key: int, default: str | None = None) -> str | None:
        if self.names is None:
            self.names = {id(m): name or self.root for name, m in self.model.named_modules()}
        return self.names.get(key, default)


HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
#: qualified names of the modules of the model being canonized (for messages)
NAMES: ContextVar[ModuleNames | dict[int, str] | None] = ContextVar("seqlrp_canonize_names", default=None)
#: the exact classes whose forward canonization knows (subclasses may compute something else)
FUSABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def module_name(module: nn.Module) -> str:
    return (NAMES.get() or {}).get(id(module), type(module).__name__)


def check_replaceable(*modules: nn.Module) -> None:
    """Canonization rebuilds these modules from what it knows of their class: refuse hooks on them, and
    instance attributes that replace a method of the class (``module.forward = ...``)."""
    for module in modules:
        hooks = [kind.strip("_").replace("_", " ") for kind in HOOKS if getattr(module, kind, None)]
        if hooks:
            raise CanonizationError(
                f"module {module_name(module)!r} ({type(module).__name__}) has {', '.join(hooks)}; canonization "
                "replaces it by a new layer (batch norm fused), where the hooks would see other values. Remove them "
                "(handle.remove()) before explaining")
        patched = patched_methods(module)
        if patched:
            raise CanonizationError(
                f"module {module_name(module)!r} ({type(module).__name__}) has its method(s) {patched} replaced on the "
                "instance; canonization only knows the class's own forward")


def patched_methods(module: nn.Module) -> list[str]:
    """Names of the class's methods that the instance replaces (``module.forward = ...``)."""
    return [key for key, value in module.__dict__.items() if callable(value)
            and isinstance(inspect.getattr_static(type(module), key, None), FunctionType)]


def expect(module: nn.Module, types: tuple[type, ...], role: str) -> nn.Module:
    """``module`` if its class is exactly one of ``types``; else a :class:`CanonizationError` naming it."""
    if type(module) not in types:
        raise CanonizationError(
            f"module {module_name(module)!r} is a {type(module).__name__} where the canonizer of a torchvision model "
            f"expects {role} ({' or '.join(t.__name__ for t in types)}): the model was changed in a way it cannot "
            "follow; explain a model built from nn.Sequential or fuse the batch norms by hand")
    return module


def fuse(layer: nn.Module, bn: BN) -> nn.Module:
    """A new Conv/Linear computing ``bn(layer(x))`` (new tensors; the user's layers are only read)."""
    expect(layer, FUSABLE, "a convolution or linear layer before a batch norm")
    expect(bn, NORMS, "a batch norm")
    check_replaceable(layer, bn)
    scale, shift = bn_affine(bn)
    fused = shallow_copy(layer)  # same hyper-parameters, fresh containers, new tensors below
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    with torch.no_grad():
        weight = layer.weight * scale.view(shape).to(layer.weight.dtype)
        bias = shift if layer.bias is None else layer.bias * scale + shift
    fused.__dict__["_parameters"] = {"weight": nn.Parameter(weight.detach(), layer.weight.requires_grad),
                                     "bias": nn.Parameter(bias.detach().to(layer.weight.dtype),
                                                          layer.weight.requires_grad)}
    return fused


def threshold(bn: BN) -> tuple[ThreshReLU, Tensor, Tensor]:
    """``ReLU(bn(x)) = scale * ThreshReLU(x) + shift``: the ThreshReLU and the BN affine to fuse onwards."""
    expect(bn, NORMS, "a batch norm")
    check_replaceable(bn)
    scale, shift = bn_affine(bn)
    mean, std = bn.running_mean.detach(), torch.sqrt(bn.running_var + bn.eps).detach()
    beta = bn.bias.detach() if bn.affine else torch.zeros_like(std)
    gamma = bn.weight.detach() if bn.affine else torch.ones_like(std)
    zero = gamma == 0
    safe_gamma = torch.where(zero, torch.ones_like(gamma), gamma)
    threshold = torch.where(zero, torch.zeros_like(mean), mean - beta * std / safe_gamma)
    # γ = 0: the BN output is the constant β, so ReLU gives max(β, 0) whatever x is
    shift = torch.where(zero, beta.clamp(min=0), shift)
    scale = torch.where(zero, torch.zeros_like(scale), scale)
    return ThreshReLU(threshold, torch.sign(gamma)), scale, shift


def threshold_and_fuse(bn: BN, relu: nn.Module, conv: nn.Conv2d) -> tuple[ThreshReLU, TensorBiasedConv2d]:
    """``conv(relu(bn(x)))`` as ``TensorBiasedConv2d(ThreshReLU(x))`` (see :class:`ThreshReLU`)."""
    expect(relu, (nn.ReLU,), "a ReLU between batch norm and convolution")
    expect(conv, (nn.Conv2d,), "a convolution")
    check_replaceable(relu, conv)
    thresh, scale, shift = threshold(bn)
    return thresh, TensorBiasedConv2d(conv, scale, shift)
