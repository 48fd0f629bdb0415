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

import functools
import sys
from collections import OrderedDict

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from ..core.copying import shallow_copy, structural_copy
from .batchnorm import check_replaceable


def split_classes() -> dict[type, str]:
    """The classes :func:`split` knows, with their names: timm's (when timm is imported) and torchvision's
    ``FrozenBatchNorm2d``."""
    return _split_classes_of(sys.modules.get("timm.layers.norm_act"))


@functools.lru_cache(maxsize=1)
def _split_classes_of(module: object) -> dict[type, str]:
    """:func:`split_classes` for timm's imported ``norm_act`` module (None: timm not imported)."""
    classes: dict[type, str] = {FrozenBatchNorm2d: "FrozenBatchNorm2d"}
    if module is not None:
        classes.update({getattr(module, name): name for name in ("BatchNormAct2d", "SyncBatchNormAct",
                                                                 "FrozenBatchNormAct2d") if hasattr(module, name)})
    return classes


_TEMPLATE: list[nn.BatchNorm2d] = []


def _batchnorm_template() -> nn.BatchNorm2d:
    """One ``nn.BatchNorm2d`` on the meta device, built once: new batch norms are shallow copies of it with their
    own hyper-parameters, tensors and fresh containers (never edited itself)."""
    if not _TEMPLATE:
        _TEMPLATE.append(nn.BatchNorm2d(1, device="meta"))
    return _TEMPLATE[0]


def _plain_batchnorm(module: nn.Module, frozen: bool) -> nn.BatchNorm2d:
    """A new ``nn.BatchNorm2d`` computing ``module``'s normalization from the same tensors (nothing copied)."""
    weight, bias = module.weight, module.bias
    bn = shallow_copy(_batchnorm_template())  # (what nn.BatchNorm2d(n, eps, affine, device="meta") builds, 30x faster)
    bn.__dict__.update(num_features=module.running_mean.numel(), eps=module.eps, affine=weight is not None,
                       track_running_stats=True, _non_persistent_buffers_set=set())
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
