"""The canonization patterns, one :class:`~seqlrp.cnn.canonizer.Canonizer` each (the protocol and the stages:
:mod:`seqlrp.cnn.canonizer`). A composite holds them as data; :data:`DEFAULT_CANONIZERS` are the CNN presets'.

| canonizer | stage | pattern |
|---|---|---|
| :class:`SplitNormAct` | split | timm's ``BatchNormAct2d`` & co. -> ``Sequential(bn, drop, act)`` |
| :class:`SplitTimmBlocks` | split | timm's "SAME" convs/pools, standardized convs, LayerNorm2d, norm+act |
| :class:`ClassRebuild` | structure | exact classes with a known forward rebuilt (torchvision ResNet, DenseNet) |
| :class:`TimmBlockFusion` | structure | Conv -> BN child pairs of timm's EfficientNet/MobileNetV3 blocks fused |
| :class:`SequentialFusion` | structure | Conv/Linear -> BN pairs of sequentials fused |
| :class:`ProducerFusion` | graph | Conv/Linear -> BN fused (the layer feeds only the BN) |
| :class:`ThreshReLUFusion` | graph | BN -> [ReLU ->] Conv/Linear consumers: ThreshReLU + tensor-biased layers |
| :class:`KeepAsAffine` | graph, fallback | any other BN -> :class:`~seqlrp.cnn.layers.ChannelAffine` |

A user's canonizer (e.g. rebuilding a block of their own) subclasses :class:`~seqlrp.cnn.canonizer.Canonizer`
and is passed with the defaults: ``EpsilonPlusFlat(canonizers=(MyCanonizer(), *DEFAULT_CANONIZERS))``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..core.copying import unwrap, with_children
from .batchnorm import FUSABLE, NORMS, bn_affine, check_replaceable, fuse, threshold
from .canonizer import Canonizer, calls_children_whole, runs_sequentially, sequential
from .graph import consumer_plans, is_relu
from .layers import ChannelAffine, TensorBiasedConv2d, TensorBiasedLinear
from .normact import split, split_classes
from .rebuilt import REBUILT
from .timm_blocks import rebuild_timm_block, timm_fusion_pairs


# ------------------------------------------------------------------------------------------- split
class SplitNormAct(Canonizer):
    """timm's batch norms with their activation inside -> ``Sequential(bn, drop, act)`` (:mod:`seqlrp.cnn.normact`)."""

    stages = frozenset({"split"})

    def rebuild(self, module, place):
        kind = split_classes().get(type(module))
        return None if kind is None else split(module, kind)


class SplitTimmBlocks(Canonizer):
    """timm's convolutions with "SAME" padding or weight standardization, its "SAME" pools, its ``LayerNorm2d`` and
    its group/layer norms with their activation inside, as plain modules (:mod:`seqlrp.cnn.timm_blocks`)."""

    stages = frozenset({"split"})

    def rebuild(self, module, place):
        return rebuild_timm_block(module)


# --------------------------------------------------------------------------------------- structure
class ClassRebuild(Canonizer):
    """Exact classes whose forward is known, rebuilt by a factory: ``{cls: factory(module) -> new module}``.

    The factories canonize the submodules they keep with ``place.walk`` (through
    :func:`seqlrp.cnn.canonize.canonize_module`); the default table holds torchvision's ResNet and DenseNet.
    """

    stages = frozenset({"structure"})

    def __init__(self, table: dict[type, Callable[[nn.Module], nn.Module]] | None = None):
        self.table = dict(REBUILT if table is None else table)

    def rebuild(self, module, place):
        factory = self.table.get(type(module))
        if factory is None:
            return None
        check_replaceable(module)
        return factory(module)

    def __repr__(self):
        return f"ClassRebuild({', '.join(t.__name__ for t in self.table)})"


class TimmBlockFusion(Canonizer):
    """timm's ``EfficientNet``, ``MobileNetV3`` and their blocks (``InvertedResidual``, ``DepthwiseSeparableConv``,
    ``EdgeResidual``, ``ConvBnAct``; exact classes, :func:`~seqlrp.cnn.timm_blocks.timm_fusion_pairs`): their
    forward runs ``x = self.conv(x); x = self.bn(x)`` for known child pairs, so each pair is fused where nothing
    calls a part of the block: the fused layer takes the conv's slot, the norm's slot keeps what follows the batch
    norm in it (the split ``Sequential(bn, drop, act)`` without its ``bn``; ``nn.Identity`` for a bare batch norm).
    The block keeps its class and its forward (residual adds, ``DropPath``, ``has_skip`` as they are now); the other
    children are walked. A pair that does not fit (a ``SamePad2d -> Conv2d``, a norm of another kind) is left
    unfused, and its batch norm sends the model to the traced graph."""

    stages = frozenset({"structure"})

    def rebuild(self, module, place):
        pairs = timm_fusion_pairs(module)
        if pairs is None or not place.whole or not calls_children_whole(module):
            return None
        new: dict[str, nn.Module] = {}
        for conv_name, norm_name in pairs:
            conv, norm = module._modules.get(conv_name), module._modules.get(norm_name)
            if conv is None or norm is None:
                continue
            conv, norm = unwrap(conv), unwrap(norm)
            if type(conv) not in FUSABLE:
                continue
            if type(norm) in NORMS:
                new[conv_name], new[norm_name] = fuse(conv, norm), nn.Identity()
            elif runs_sequentially(norm) and calls_children_whole(norm) and len(norm._modules) \
                    and type(next(iter(norm._modules.values()))) in NORMS:
                (bn_name, bn), *rest = norm._modules.items()
                new[conv_name] = fuse(conv, bn)
                new[norm_name] = with_children(norm, {name: None if child is None else place.walk(child, True)
                                                      for name, child in rest})
        return with_children(module, {name: new[name] if name in new else None if child is None
                                      else place.walk(child, True) for name, child in module._modules.items()})


class SequentialFusion(Canonizer):
    """Conv/Linear -> BN pairs of a sequential that nothing calls in part fused into one layer (the fused layer
    takes the conv's slot, the BN's slot is dropped); the other children walked."""

    stages = frozenset({"structure"})

    def rebuild(self, module, place):
        return sequential(module, place.whole) if runs_sequentially(module) else None


# ------------------------------------------------------------------------------------------- graph
class ProducerFusion(Canonizer):
    """Graph: ``Conv/Linear -> BN`` where the layer's output feeds only the batch norm and the layer is called
    once: one fused layer in the layer's place, the batch norm's node removed."""

    stages = frozenset({"graph"})

    def rebuild(self, module, place):
        node = place.node
        producer = node.args[0]
        layer = place.module_of(producer)
        if type(layer) not in FUSABLE or len(producer.users) != 1 or place.calls[producer.target] != 1:
            return None
        new = fuse(layer, module)
        place.set_module(producer.target, new)
        node.replace_all_uses_with(producer)
        place.graph.erase_node(node)
        return new


class ThreshReLUFusion(Canonizer):
    """Graph: ``BN -> [ReLU ->] consumers``, each a Conv2d, a Linear, or *average pool to 1x1 -> flatten ->
    Linear*: the batch norm fused into every consumer (:class:`TensorBiasedConv2d`: a spatial bias map, zero
    padding sees no shift; :class:`TensorBiasedLinear`: the affine commutes with the average); with the ReLU
    it becomes a :class:`~seqlrp.cnn.layers.ThreshReLU` (the ThreshReLU theorem, docs/cnn.md)."""

    stages = frozenset({"graph"})

    def rebuild(self, module, place):
        node, graph = place.node, place.graph
        relu = None
        if len(node.users) == 1 and is_relu(next(iter(node.users)), place.module_of):
            (relu,) = node.users
        plans = consumer_plans(relu if relu is not None else node, place.module_of, place.calls)
        if plans is None:
            return None
        thresh, scale, shift = threshold(module) if relu is not None else (None, *bn_affine(module))
        for target_node, layer in plans:
            if isinstance(layer, nn.Conv2d):
                new = TensorBiasedConv2d(layer, scale, shift)
            else:
                weight = layer.weight.detach()
                bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(weight[:, 0])
                new = TensorBiasedLinear(weight * scale[None, :], weight @ shift + bias)
            place.set_module(target_node.target, new)
        if relu is not None:
            place.set_module(node.target, thresh)
            relu.replace_all_uses_with(node)
            graph.erase_node(relu)
            return thresh
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
        return nn.Identity()


class KeepAsAffine(Canonizer):
    """A batch norm (exact class) that no other pattern fuses becomes a :class:`ChannelAffine` layer: the same
    function wherever and however it is called (ε on its diagonal map: docs/cnn.md)."""

    stages = frozenset({"graph", "fallback"})

    def rebuild(self, module, place):
        if type(module) not in NORMS:
            return None
        check_replaceable(module)
        new = ChannelAffine(*bn_affine(module))
        if place.set_module is not None:
            place.set_module(place.node.target, new)
        return new


#: the canonizers of the CNN presets, in order
DEFAULT_CANONIZERS: tuple[Canonizer, ...] = (SplitNormAct(), SplitTimmBlocks(), ClassRebuild(), TimmBlockFusion(),
                                             SequentialFusion(), ProducerFusion(), ThreshReLUFusion(), KeepAsAffine())
