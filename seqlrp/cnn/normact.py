"""Batch norms with their activation inside (timm's ``BatchNormAct2d`` and variants) split into plain modules.

timm builds its CNNs from ``BatchNormAct2d``: a ``BatchNorm2d`` subclass whose forward is
``act(drop(batch_norm(x)))``. Canonization knows exact batch-norm classes only (a subclass may compute
anything), so before canonizing, each such module is replaced, in a copy, by

.. code-block:: text

    nn.Sequential(bn=nn.BatchNorm2d, drop=<its drop layer>, act=<its activation>)

computing the same function: the batch norm then fuses into the convolution before it (or becomes a
:class:`~seqlrp.cnn.layers.ChannelAffine`) like any other, and the activation gets its rule as a module.

Handled (exact classes, timm 1.0): ``timm.layers.BatchNormAct2d``, ``SyncBatchNormAct`` (eval mode: the
same function as ``BatchNormAct2d``), ``FrozenBatchNormAct2d`` and torchvision's ``FrozenBatchNorm2d``
(``x * w / sqrt(var + eps) + b - mean * w / sqrt(var + eps)``: a batch norm with fixed statistics).

timm is never imported here: a model can only hold timm modules once timm is imported.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from ..core.copying import structural_copy
from .batchnorm import NAMES, check_replaceable


def _timm_classes() -> dict[type, str]:
    """The norm+act classes of the imported timm (none when timm is not imported)."""
    module = sys.modules.get("timm.layers.norm_act")
    if module is None:
        return {}
    return {getattr(module, name): name for name in ("BatchNormAct2d", "SyncBatchNormAct", "FrozenBatchNormAct2d")
            if hasattr(module, name)}


def _plain_batchnorm(module: nn.Module, frozen: bool) -> nn.BatchNorm2d:
    """A new ``nn.BatchNorm2d`` computing ``module``'s normalization from the same tensors (nothing copied)."""
    weight, bias = module.weight, module.bias
    bn = nn.BatchNorm2d(module.running_mean.numel(), eps=module.eps, affine=weight is not None,
                        track_running_stats=True, device="meta")
    if weight is not None and not isinstance(weight, nn.Parameter):  # (frozen: weight and bias are buffers)
        weight, bias = nn.Parameter(weight, requires_grad=False), nn.Parameter(bias, requires_grad=False)
    bn.__dict__["_parameters"] = {"weight": weight, "bias": bias}
    bn.__dict__["_buffers"] = {"running_mean": module.running_mean, "running_var": module.running_var,
                               "num_batches_tracked": None}
    bn.__dict__["training"] = False if frozen else module.training
    return bn


def split(module: nn.Module, kind: str) -> nn.Sequential:
    """``module`` (a norm+act of class ``kind``) as ``Sequential(bn, drop, act)``; the last two are the module's
    own drop and activation (copies sharing their tensors), absent ones left out."""
    check_replaceable(module)
    frozen = kind.startswith("Frozen")
    parts = OrderedDict(bn=_plain_batchnorm(module, frozen))
    for name in ("drop", "act"):
        child = module._modules.get(name)
        if child is not None and type(child) is not nn.Identity:
            parts[name] = structural_copy(child)
    sequential = nn.Sequential(parts)
    sequential.__dict__["training"] = module.training
    return sequential


def expand(model: nn.Module) -> nn.Module:
    """``model`` itself when it holds no norm+act module; else a structural copy with each one :func:`split`.

    A module used twice stays one module used twice (one split, shared).
    """
    classes = _timm_classes()
    classes[FrozenBatchNorm2d] = "FrozenBatchNorm2d"
    if not any(type(m) in classes for m in model.modules()):
        return model
    if type(model) in classes:
        return split(model, classes[type(model)])
    copy = structural_copy(model)
    replaced: dict[int, nn.Module] = {}
    token = NAMES.set({id(m): name for name, m in copy.named_modules()})  # (for messages)
    try:
        for module in list(copy.modules()):
            children = module.__dict__["_modules"]  # (a fresh container of the copy: the user's model is untouched)
            for name, child in list(children.items()):
                if child is not None and type(child) in classes:
                    if id(child) not in replaced:
                        replaced[id(child)] = split(child, classes[type(child)])
                    children[name] = replaced[id(child)]
    finally:
        NAMES.reset(token)
    return copy
