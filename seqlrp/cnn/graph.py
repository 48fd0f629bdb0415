"""Canonization from the traced graph (torch.fx), not from class names.

The model is traced symbolically (a structural copy of it: the user's objects are never run or
touched) and every batch norm is rewritten where the graph shows it, in this order:

1. **Conv/Linear -> BN** -- the producer's output feeds only the batch norm (and the producer is
   called once): both become one fused layer (:func:`seqlrp.cnn.batchnorm.fuse`).
2. **BN -> [ReLU ->] consumers**, each a Conv2d, a Linear, or *average pool to 1x1 -> flatten -> Linear*
   (DenseNet's layers and head; the ReLU a module or ``F.relu``): the batch norm is fused into every
   consumer, a :class:`TensorBiasedConv2d` (a spatial bias map: zero padding sees no shift) or a
   :class:`TensorBiasedLinear` (the affine commutes with the average); with the ReLU it becomes a
   :class:`ThreshReLU` (the ThreshReLU theorem, see docs/cnn.md).
3. **Any other BN** stays as an explicit per-channel affine layer, :class:`ChannelAffine` (ε on its
   diagonal map: documented in docs/cnn.md), instead of being refused.

A model that does not trace (data-dependent control flow) is canonized from its module structure
instead (:func:`seqlrp.cnn.canonize.canonize` falls back, and says why in its error if that fails).
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..core.copying import structural_copy
from ..core.ops import Contraction, Product, Sum
from ..core.views import view_of
from .batchnorm import FUSABLE, NAMES, NORMS, bn_affine, fuse, threshold
from .layers import ChannelAffine, TensorBiasedConv2d, TensorBiasedLinear, ThreshReLU

#: seqlrp's own modules are leaves of the trace (their views apply to them as a whole)
_OWN_LEAVES = (Sum, Product, Contraction, ThreshReLU, TensorBiasedConv2d, TensorBiasedLinear, ChannelAffine)
_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu_}
#: ops after which a per-channel affine still commutes to the next linear layer: averages to 1x1, flattening
_AVERAGES_TO_ONE = {F.adaptive_avg_pool2d, F.adaptive_avg_pool1d}
_FLATTENS = {torch.flatten}


class TraceError(RuntimeError):
    """The model could not be traced by torch.fx (the reason is the message)."""


class _Tracer(fx.Tracer):
    """torch.nn leaves, plus every module seqlrp has a view for, plus seqlrp's own modules."""

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        if isinstance(m, _OWN_LEAVES):
            return True
        if isinstance(m, nn.Sequential):
            return False
        return super().is_leaf_module(m, qualified_name) or (view_of(m) is not None and not list(m.children()))


def trace(model: nn.Module) -> tuple[nn.Module, fx.Graph]:
    """The graph of a structural copy of ``model`` and that copy (the user's modules are never run)."""
    copy = structural_copy(model)
    try:
        graph = _Tracer().trace(copy)
    except Exception as error:  # noqa: BLE001 - any tracing failure means: use the module structure
        raise TraceError(f"{type(error).__name__}: {error}") from None
    return copy, graph


def canonize_graph(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` and rewrite its batch norms (see the module docstring)."""
    root, graph = trace(model)
    token = NAMES.set({id(m): name for name, m in root.named_modules()})
    try:
        _rewrite(root, graph)
    finally:
        NAMES.reset(token)
    # (built once, from the rewritten graph: it copies only the modules the graph still calls)
    return fx.GraphModule(root, graph, class_name=type(model).__name__)


def _rewrite(root: nn.Module, graph: fx.Graph) -> None:
    """Rewrite the batch norms of ``graph`` in place; new modules go into ``root`` (the traced copy)."""
    modules = dict(root.named_modules())
    calls = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1

    def module(node):
        return modules.get(node.target) if isinstance(node, fx.Node) and node.op == "call_module" else None

    def set_module(target: str, new: nn.Module) -> None:
        parent, _, leaf = target.rpartition(".")
        owner = root.get_submodule(parent) if parent else root
        owner.__dict__["_modules"][leaf] = new  # (modules of the traced copy, never the user's)
        modules[target] = new

    for node in list(graph.nodes):
        bn = module(node)
        if type(bn) not in NORMS or calls[node.target] != 1:
            continue
        producer = node.args[0]
        layer = module(producer)
        if type(layer) in FUSABLE and len(producer.users) == 1 and calls[producer.target] == 1:
            set_module(producer.target, fuse(layer, bn))
            node.replace_all_uses_with(producer)
            graph.erase_node(node)
            continue
        if _fuse_into_consumers(graph, node, bn, module, set_module, calls):
            continue
        set_module(node.target, ChannelAffine(*bn_affine(bn)))


def _is_relu(node: fx.Node, module) -> bool:
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    return type(module(node)) is nn.ReLU


def _fuse_into_consumers(graph, node, bn, module, set_module, calls) -> bool:
    """BN -> [ReLU ->] consumers, each a Conv2d, a Linear, or avg-to-1x1 -> flatten -> Linear: the batch norm is
    fused into every consumer (a tensor-biased layer); with the ReLU it becomes a :class:`ThreshReLU`."""
    relu = None
    if len(node.users) == 1 and _is_relu(next(iter(node.users)), module):
        (relu,) = node.users
    source = relu if relu is not None else node
    if not source.users:
        return False
    plans = []
    for user in source.users:
        layer = module(user)
        if type(layer) in (nn.Conv2d, nn.Linear) and calls[user.target] == 1 and tuple(user.args) == (source,) \
                and not user.kwargs:
            plans.append((user, layer))
            continue
        head = _head_linear(user, module, calls)
        if head is None:
            return False
        plans.append((head, module(head)))
    thresh, scale, shift = threshold(bn) if relu is not None else (None, *bn_affine(bn))
    for target_node, layer in plans:
        if isinstance(layer, nn.Conv2d):
            new = TensorBiasedConv2d(layer, scale, shift)
        else:
            weight = layer.weight.detach()
            bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(weight[:, 0])
            new = TensorBiasedLinear(weight * scale[None, :], weight @ shift + bias)
        set_module(target_node.target, new)
    if relu is not None:
        set_module(node.target, thresh)
        relu.replace_all_uses_with(node)
        graph.erase_node(relu)
    else:
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
    return True


def _head_linear(node: fx.Node, module, calls) -> fx.Node | None:
    """The Linear reached by ``adaptive_avg_pool(·, 1) -> flatten -> Linear`` from ``node``, else None."""
    if node.op != "call_function" or node.target not in _AVERAGES_TO_ONE or len(node.users) != 1:
        return None
    size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
    if size not in (1, (1, 1), [1, 1], (1,)):
        return None
    (flat,) = node.users
    if flat.op != "call_function" or flat.target not in _FLATTENS or len(flat.users) != 1:
        return None
    (linear,) = flat.users
    if type(module(linear)) is not nn.Linear or calls[linear.target] != 1:
        return None
    return linear

