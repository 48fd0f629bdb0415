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

import os
import traceback
from collections.abc import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.copying import structural_copy
from ..core.ops import Contraction, Product, Sum
from ..core.views import view_of
from .batchnorm import FUSABLE, NAMES, NORMS, CanonizationError
from .canonizer import CURRENT, Place, current
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
    """torch.nn leaves, plus every module seqlrp has a view for, plus seqlrp's own modules.

    It follows the forward as it runs (issue: the same function must get the same explanation):

    * a module created inside forward (``Add()(a, b)``) is installed in the traced copy under a new name;
    * a data-dependent condition (``if x.abs().max() > 1e6``) is evaluated on the example input, the branch it
      takes is followed, and a guard node in the graph raises :class:`CanonizationError` for an input that would
      take the other branch (never a silently different function).
    """

    def __init__(self, example: Callable[[], Tensor]):
        super().__init__()
        self.example = example
        self.installed: dict[int, str] = {}
        self.evaluating = False  # (while a condition is evaluated: modules run as they are, untraced)

    def call_module(self, m, forward, args, kwargs):
        if self.evaluating:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        if isinstance(m, _OWN_LEAVES):
            return True
        if isinstance(m, nn.Sequential):
            return False
        return super().is_leaf_module(m, qualified_name) or (view_of(m) is not None and not list(m.children()))

    def path_of_module(self, mod: nn.Module) -> str:
        try:
            return super().path_of_module(mod)
        except NameError:  # created inside forward: installed in the traced copy (never the user's model)
            if id(mod) not in self.installed:
                name = f"_created_in_forward_{len(self.installed)}"
                self.root.__dict__["_modules"][name] = mod
                self.installed[id(mod)] = name
                self.submodule_paths = None
            return self.installed[id(mod)]

    def to_bool(self, obj: fx.Proxy) -> bool:
        taken = bool(self._evaluate(obj.node))
        self.create_proxy("call_function", _branch_guard, (obj, taken, _user_frame()), {})
        return taken

    def _evaluate(self, node: fx.Node):
        """The value of ``node`` on the example input (the graph so far, run on copies of the tensors)."""
        partial, values = fx.Graph(), {}
        partial.graph_copy(self.graph, values)
        partial.output(values[node])
        placeholders = [n for n in partial.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise TraceError(f"a data-dependent condition in a forward with {len(placeholders)} inputs")
        module = fx.GraphModule(self.root, partial)
        tensors = {k: v.detach().clone() for k, v in list(module.named_parameters()) + list(module.named_buffers())}
        x = self.example()
        first = next((t for t in tensors.values() if t.is_floating_point()), None)
        if first is not None:
            x = x.to(first.dtype)
        self.evaluating = True
        try:
            with torch.no_grad():
                return torch.func.functional_call(module, tensors, (x,))
        finally:
            self.evaluating = False


def _user_frame() -> str:
    """``file:line`` of the innermost frame of the user's code (for the guard's message)."""
    for frame in reversed(traceback.extract_stack()):
        if f"{os.sep}torch{os.sep}" not in frame.filename and not frame.filename.endswith(("graph.py", "proxy.py")):
            return f"{frame.filename}:{frame.lineno} ({frame.line})"
    return "?"


def _branch_guard(condition, taken: bool, where: str):
    """Raise if ``condition`` now takes the branch the canonization did not follow."""
    if bool(condition) != taken:
        raise CanonizationError(
            f"the canonized model follows the branch that its example input took at {where} (condition {taken}); "
            f"this input takes the other branch. Canonize with an example_input that takes it "
            "(seqlrp.cnn.canonize(model, example_input=x)), or write the forward without the data-dependent if")
    return condition


fx.wrap("_branch_guard")


def example_input(model: nn.Module) -> Tensor:
    """A random input of the shape the model's first conv or linear layer takes (``randn(2, C, 64, 64)`` for a
    Conv2d)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return torch.randn(2, m.in_channels, 64, 64, generator=torch.Generator().manual_seed(0))
        if isinstance(m, nn.Conv1d):
            return torch.randn(2, m.in_channels, 64, generator=torch.Generator().manual_seed(0))
        if isinstance(m, nn.Linear):
            return torch.randn(2, m.in_features, generator=torch.Generator().manual_seed(0))
    raise CanonizationError("cannot guess an input shape for verification: pass example_input=")


def trace(model: nn.Module) -> tuple[nn.Module, fx.Graph]:
    """The graph of a structural copy of ``model`` and that copy (the user's modules are never run: data-dependent
    conditions are evaluated on copies of the tensors)."""
    copy = structural_copy(model)
    run = CURRENT.get()
    given = run.example_input if run is not None else None

    def example() -> Tensor:
        return given if given is not None else example_input(model)

    try:
        graph = _Tracer(example).trace(copy)
    except Exception as error:  # noqa: BLE001 - any tracing failure means: use the module structure
        raise TraceError(f"{type(error).__name__}: {error}") from None
    _unshare(copy, graph)
    return copy, graph


def _unshare(root: nn.Module, graph: fx.Graph) -> None:
    """A convolution, linear layer or batch norm called more than once gets one copy per call (same tensors):
    each call can then be fused with its own neighbours, as if the layers had been written out separately."""
    seen: dict[str, int] = {}
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        count = seen[node.target] = seen.get(node.target, 0) + 1
        if count == 1:
            continue
        module = root.get_submodule(node.target)
        if type(module) not in FUSABLE + NORMS:
            continue
        parent, _, leaf = node.target.rpartition(".")
        owner = root.get_submodule(parent) if parent else root
        name = f"{leaf}_call{count}"
        while name in owner._modules:
            name += "_"
        owner.__dict__["_modules"][name] = structural_copy(module)
        node.target = f"{parent}.{name}" if parent else name


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

