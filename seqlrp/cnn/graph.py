"""Canonization from the traced graph (torch.fx), not from class names.

The model is traced symbolically (a structural copy of it: the user's objects are never run or
touched) and every batch norm called once is offered to the graph-stage canonizers
(:mod:`seqlrp.cnn.canonizers`); by default, in this order:

1. **Conv/Linear -> BN** -- the producer's output feeds only the batch norm (and the producer is
   called once): both become one fused layer (:class:`~seqlrp.cnn.canonizers.ProducerFusion`).
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
from .batchnorm import NAMES, NORMS
from .canonizer import Place, current
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
    """Offer each batch norm of ``graph`` called once to the graph-stage canonizers of the current canonization
    (the first that returns a module has rewritten it); new modules go into ``root`` (the traced copy)."""
    canonizers = current().stage["graph"]
    modules = dict(root.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1

    def module_of(node):
        return modules.get(node.target) if isinstance(node, fx.Node) and node.op == "call_module" else None

    def set_module(target: str, new: nn.Module) -> None:
        parent, _, leaf = target.rpartition(".")
        owner = root.get_submodule(parent) if parent else root
        owner.__dict__["_modules"][leaf] = new  # (modules of the traced copy, never the user's)
        modules[target] = new

    for node in list(graph.nodes):
        bn = module_of(node)
        if type(bn) not in NORMS or calls[node.target] != 1:
            continue
        place = Place(node=node, graph=graph, module_of=module_of, calls=calls, set_module=set_module)
        for canonizer in canonizers:
            if canonizer.rebuild(bn, place) is not None:
                break


def is_relu(node: fx.Node, module_of) -> bool:
    """Whether ``node`` applies a ReLU (a module, ``F.relu``, ``torch.relu`` or ``x.relu()``)."""
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    return type(module_of(node)) is nn.ReLU


def consumer_plans(source: fx.Node, module_of, calls) -> list | None:
    """``[(node, layer)]``: every user of ``source`` as a Conv2d or Linear called once on ``source`` alone, or the
    Linear of *average pool to 1x1 -> flatten -> Linear*; None if ``source`` has no users or another one."""
    if not source.users:
        return None
    plans = []
    for user in source.users:
        layer = module_of(user)
        if type(layer) in (nn.Conv2d, nn.Linear) and calls[user.target] == 1 and tuple(user.args) == (source,) \
                and not user.kwargs:
            plans.append((user, layer))
            continue
        head = _head_linear(user, module_of, calls)
        if head is None:
            return None
        plans.append((head, module_of(head)))
    return plans


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

