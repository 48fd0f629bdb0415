"""The canonizer protocol and the structural walk that offers modules to canonizers.

A :class:`Canonizer` is one canonization pattern (the concrete ones: :mod:`seqlrp.cnn.canonizers`); it is
offered modules of the model being canonized and answers with a new module computing the same function, or
``None`` when its pattern does not apply:

.. code-block:: python

    class Canonizer:
        stages: frozenset[str]                                        # when it is offered modules
        def rebuild(self, module: nn.Module, place: Place) -> nn.Module | None: ...

It must never edit ``module`` (it may be the user's): new layers get new tensors, or share the user's tensors
unchanged. :func:`seqlrp.cnn.canonize` checks the whole canonized model against the original in float64.
``place`` tells where the module is: ``whole`` (every ancestor calls its children whole: nothing calls a part
of it), ``walk`` (canonizes a submodule with every canonizer of the stage: rebuilds that keep submodules call
it) and, in the ``"graph"`` stage, the batch norm's traced ``node``, the ``graph``, ``module_of(node)``,
``calls`` (module target -> number of calls) and ``set_module(target, new)``.

The stages, in the order :func:`seqlrp.cnn.canonize` runs them:

``"split"``
    Every module, on every route, before anything else: modules that hide several ops in one (timm's
    ``BatchNormAct2d``). A user's canonizer usually goes here (then the graph route sees its result too).
``"structure"``
    The structural walk (:func:`walk`, top-down; the first canonizer that returns a module wins, else the
    module is copied and its children walked). Taken where the module structure shows every dataflow
    (:func:`structure_suffices`: plain sequentials, the torchvision classes of ``CALLS_CHILDREN_WHOLE`` and timm's
    EfficientNet/MobileNetV3 classes of :func:`~seqlrp.cnn.timm_blocks.timm_fusion_pairs`), and as the fallback of
    a model that does not trace.
``"graph"``
    Each batch norm of the traced graph (torch.fx) that is called once, in graph order; the first canonizer
    that returns a module wins (and has rewritten the graph through ``place``).
``"fallback"``
    Batch norms left by the structural walk of a model that does not trace.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ClassVar

from torch import nn
from torchvision.models import efficientnet, mnasnet, mobilenetv2, mobilenetv3, regnet, shufflenetv2, squeezenet
from torchvision.models.alexnet import AlexNet
from torchvision.models.vgg import VGG
from torchvision.ops.misc import SqueezeExcitation

from ..core.copying import copy_tree, modules, unwrap, with_children
from .batchnorm import FUSABLE, HOOKS, NORMS, fuse, patched_methods
from .timm_blocks import timm_fusion_pairs

STAGES = ("split", "structure", "graph", "fallback")


@dataclass
class Place:
    """Where a module offered to :meth:`Canonizer.rebuild` is (see the module docstring)."""

    whole: bool = True
    walk: Callable[..., nn.Module] | None = None
    node: object | None = None
    graph: object | None = None
    module_of: Callable[[object], nn.Module | None] | None = None
    calls: dict | None = None
    set_module: Callable[[str, nn.Module], None] | None = None


class Canonizer(abc.ABC):
    """One canonization pattern (the protocol: see the module docstring)."""

    stages: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def rebuild(self, module: nn.Module, place: Place) -> nn.Module | None:
        """A new module computing the same function as ``module``, or None when the pattern does not apply."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_canonizers(canonizers: Sequence[Canonizer] | Canonizer) -> tuple[Canonizer, ...]:
    """``canonizers`` as a tuple, or a TypeError naming the first one that is not a :class:`Canonizer` of known
    stages."""
    if isinstance(canonizers, Canonizer):
        canonizers = (canonizers,)
    out = tuple(canonizers)
    for c in out:
        stages = getattr(c, "stages", None)
        if not isinstance(c, Canonizer) or not stages or not set(stages) <= set(STAGES):
            raise TypeError(f"canonizers must be seqlrp.cnn.Canonizer instances whose stages are among {STAGES}, "
                            f"got {c!r}")
    return out


class Run:
    """The canonizers of one canonization, by stage."""

    def __init__(self, canonizers: Sequence[Canonizer], example_input=None):
        self.canonizers = tuple(canonizers)
        #: the input data-dependent conditions are evaluated on while tracing (None: a random one)
        self.example_input = example_input
        self.stage = {stage: tuple(c for c in self.canonizers if stage in c.stages) for stage in STAGES}


#: the canonization in progress (set by :func:`seqlrp.cnn.canonize`; read by :func:`walk` and the graph stage)
CURRENT: ContextVar[Run | None] = ContextVar("seqlrp_canonization", default=None)


def current() -> Run:
    run = CURRENT.get()
    if run is None:
        raise RuntimeError("no canonization in progress: call seqlrp.cnn.canonize(model, canonizers=...)")
    return run


def walk(module: nn.Module, whole: bool = True) -> nn.Module:
    """The canonized copy of ``module`` by the structure-stage canonizers of the current canonization; ``whole``:
    every ancestor calls its children whole (so the Conv -> BN pairs of a sequential below may be fused)."""
    module = unwrap(module)
    canonizers = current().stage["structure"]
    if canonizers:
        place = Place(whole=whole, walk=walk)
        for canonizer in canonizers:
            new = canonizer.rebuild(module, place)
            if new is not None:
                return new
    inner = whole and calls_children_whole(module)
    return copy_tree(module, lambda child: walk(child, inner))


def sequential(seq: nn.Sequential, whole: bool) -> nn.Sequential:
    """A copy of ``seq`` (its own hooks kept: its input and output are unchanged) whose children are canonized
    and, when ``whole`` (nothing calls a part of it), whose Conv/Linear -> BN pairs are fused (the fused layer
    takes the conv's slot, the BN's slot is dropped)."""
    inner = whole and calls_children_whole(seq)
    children: dict[str, nn.Module | None] = {}
    items = list(seq._modules.items())
    i = 0
    while i < len(items):
        name, module = items[i]
        following = items[i + 1][1] if i + 1 < len(items) else None
        if inner and type(module) in FUSABLE and type(following) in NORMS:
            children[name] = fuse(module, following)
            i += 2
            continue
        children[name] = None if module is None else walk(module, inner)
        i += 1
    return with_children(seq, children)


def runs_sequentially(module: nn.Module) -> bool:
    """An ``nn.Sequential`` or a subclass running its forward (torchvision's ``Conv2dNormActivation``): child
    ``i``'s output is child ``i + 1``'s input and nothing else's."""
    cls = type(module)
    return (isinstance(module, nn.Sequential) and cls.forward is nn.Sequential.forward
            and cls.__iter__ is nn.Sequential.__iter__ and plain_call(cls))


def plain_call(cls: type) -> bool:
    return cls.__call__ is nn.Module.__call__ and cls._call_impl is nn.Module._call_impl


#: torchvision classes whose forward calls every child module whole: never an item or a slice of a
#: Sequential child, never a child's parameters (read from the torchvision 0.29 sources; exact classes only)
CALLS_CHILDREN_WHOLE = frozenset({
    AlexNet, VGG, squeezenet.SqueezeNet, squeezenet.Fire,
    mobilenetv2.MobileNetV2, mobilenetv2.InvertedResidual, mobilenetv3.MobileNetV3, mobilenetv3.InvertedResidual,
    efficientnet.EfficientNet, efficientnet.MBConv, efficientnet.FusedMBConv, SqueezeExcitation,
    regnet.RegNet, regnet.ResBottleneckBlock, mnasnet.MNASNet, mnasnet._InvertedResidual,
    shufflenetv2.ShuffleNetV2, shufflenetv2.InvertedResidual,
})


def calls_children_whole(module: nn.Module) -> bool:
    """A plain sequential (:func:`runs_sequentially`) or one of the torchvision or timm classes whose forward calls
    its children whole (``CALLS_CHILDREN_WHOLE``, :func:`~seqlrp.cnn.timm_blocks.timm_fusion_pairs`), with no hooks
    and no method replaced on the instance."""
    cls = type(module)
    known = cls in CALLS_CHILDREN_WHOLE or timm_fusion_pairs(module) is not None
    if not (runs_sequentially(module) or (known and plain_call(cls))):
        return False
    return not any(getattr(module, kind, None) for kind in HOOKS) and not patched_methods(module)


def structure_suffices(model: nn.Module) -> bool:
    """Whether the module structure alone shows every dataflow that Sequential fusion relies on.

    True when every module with children calls them whole (:func:`calls_children_whole`). Then a
    Conv/Linear followed by a batch norm inside a sequential feeds only that batch norm, wherever the
    sequential is called, and fusing them needs no trace. A forward that could call ``seq[0]`` or
    ``seq[:2]`` alone (any other class) is left to the traced graph.
    """
    return all(calls_children_whole(m) for m in modules(model) if m._modules)
