"""Canonization: a NEW model computing the same function, on which the LRP rules are meaningful.

* Conv/Linear -> BatchNorm pairs are fused into new layers: ``w' = w γ/s``,
  ``b' = (b - μ) γ/s + β``, ``s = sqrt(var + eps)``.
* torchvision ResNets: each residual ``out + identity`` becomes an explicit :class:`Sum`; the ReLU
  module the blocks reuse becomes one module per use.
* torchvision DenseNets: ``BN -> ReLU -> Conv`` becomes ``ThreshReLU -> TensorBiasedConv2d``
  (the BN fused into the *next* conv, with a spatial bias map); the ``torch.cat`` before each
  layer becomes a :class:`Concat` module; the functional ``F.relu``/``F.adaptive_avg_pool2d`` of
  the head become modules: ``ThreshReLU -> AdaptiveAvgPool2d -> TensorBiasedLinear``.
* VGG/VGG-BN and any model built from ``nn.Sequential``: the Conv/Linear -> BN pairs are fused.

The user's model is never modified, not even temporarily: new layers get new tensors, unchanged
layers are structural copies sharing their parameters, and verification runs on copies.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.models import efficientnet, mnasnet, mobilenetv2, mobilenetv3, regnet, shufflenetv2, squeezenet
from torchvision.models.alexnet import AlexNet
from torchvision.models.densenet import DenseNet, _DenseBlock, _DenseLayer, _Transition
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.vgg import VGG
from torchvision.ops.misc import SqueezeExcitation

from ..core.checks import check_eval_mode, mode_dependent
from ..core.copying import copy_tree, record_outputs, structural_copy, unwrap, with_children
from ..core.ops import Sum
from .batchnorm import (
    BN,
    FUSABLE,
    HOOKS,
    NAMES,
    NORMS,
    CanonizationError,
    bn_affine,
    check_replaceable,
    expect,
    fuse,
    module_name,
    patched_methods,
    threshold,
    threshold_and_fuse,
)
from .layers import ChannelAffine, TensorBiasedLinear
from .normact import expand

# (the names this module had before the algebra moved to batchnorm.py)
_bn_affine, _threshold = bn_affine, threshold


class Concat(nn.Module):
    """``torch.cat(inputs, dim)`` as a module (routing: relevance passes to each part)."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: Tensor) -> Tensor:
        return torch.cat(inputs, self.dim)


# ----------------------------------------------------------------------------------------- ResNet
class CanonicalBasicBlock(nn.Module):
    """torchvision's BasicBlock: fused convs, an explicit :class:`Sum`, the block's activation once per use."""

    def __init__(self, block: BasicBlock):
        super().__init__()
        self.conv1, self.relu1 = fuse(block.conv1, block.bn1), structural_copy(block.relu)
        self.conv2 = fuse(block.conv2, block.bn2)
        self.downsample = _canonize_module(block.downsample) if block.downsample is not None else None
        self.sum, self.relu2 = Sum(), structural_copy(block.relu)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.sum(self.conv2(self.relu1(self.conv1(x))), identity))


class CanonicalBottleneck(nn.Module):
    """torchvision's Bottleneck: fused convs, an explicit :class:`Sum`, the block's activation once per use."""

    def __init__(self, block: Bottleneck):
        super().__init__()
        self.conv1, self.relu1 = fuse(block.conv1, block.bn1), structural_copy(block.relu)
        self.conv2, self.relu2 = fuse(block.conv2, block.bn2), structural_copy(block.relu)
        self.conv3 = fuse(block.conv3, block.bn3)
        self.downsample = _canonize_module(block.downsample) if block.downsample is not None else None
        self.sum, self.relu3 = Sum(), structural_copy(block.relu)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.relu3(self.sum(out, identity))


class CanonicalResNet(nn.Module):
    """torchvision ResNet/ResNeXt/Wide-ResNet with fused BNs, explicit sums and one activation per use.

    Every submodule the class's forward uses is taken from the model as it is now (a swapped pooling,
    activation, head or stage is followed); the stages are canonized like any module.
    """

    def __init__(self, model: ResNet):
        super().__init__()
        self.conv1, self.relu = fuse(model.conv1, model.bn1), structural_copy(model.relu)
        self.maxpool = structural_copy(model.maxpool)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, _canonize_module(getattr(model, name)))
        self.avgpool, self.flatten, self.fc = structural_copy(model.avgpool), nn.Flatten(1), structural_copy(model.fc)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


# --------------------------------------------------------------------------------------- DenseNet
class CanonicalDenseLayer(nn.Module):
    def __init__(self, layer: _DenseLayer):
        super().__init__()
        if layer.training and layer.drop_rate > 0:
            raise CanonizationError(f"dense layer {module_name(layer)!r} is in training mode with drop_rate "
                                    f"{layer.drop_rate} (random dropout); call model.eval()")
        self.cat = Concat(1)
        self.thresh1, self.conv1 = threshold_and_fuse(layer.norm1, layer.relu1, layer.conv1)
        self.thresh2, self.conv2 = threshold_and_fuse(layer.norm2, layer.relu2, layer.conv2)

    def forward(self, *features: Tensor) -> Tensor:
        return self.conv2(self.thresh2(self.conv1(self.thresh1(self.cat(*features)))))


class CanonicalDenseBlock(nn.ModuleDict):
    def __init__(self, block: _DenseBlock):
        layers = {name: expect(layer, (_DenseLayer,), "a dense layer") for name, layer in block.items()}
        check_replaceable(*layers.values())
        super().__init__({name: CanonicalDenseLayer(layer) for name, layer in layers.items()})
        self.cat = Concat(1)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for name, layer in self.items():
            if name != "cat":
                features.append(layer(*features))
        return self.cat(*features)


class CanonicalTransition(nn.Module):
    def __init__(self, transition: _Transition):
        super().__init__()
        self.thresh, self.conv = threshold_and_fuse(transition.norm, transition.relu, transition.conv)
        self.pool = structural_copy(transition.pool)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(self.thresh(x)))


class CanonicalDenseNet(nn.Module):
    """torchvision DenseNet: ThreshReLU + tensor-biased convs; explicit cat; modules for the head.

    ``features`` is canonized child by child (Conv -> BN pairs fused, dense blocks and transitions
    rebuilt, anything else canonized as any module); its last child must be the batch norm that the
    head's ``F.relu`` follows.
    """

    def __init__(self, model: DenseNet):
        super().__init__()
        source = expect(model.features, (nn.Sequential,), "the features nn.Sequential")
        check_replaceable(source)
        *body, (norm_name, norm) = list(source._modules.items())
        features, i = nn.Sequential(), 0
        while i < len(body):
            name, module = body[i]
            following = body[i + 1][1] if i + 1 < len(body) else None
            if type(module) in FUSABLE and type(following) in NORMS:
                features.add_module(name, fuse(module, following))
                i += 2
                continue
            if type(module) is _DenseBlock:
                features.add_module(name, CanonicalDenseBlock(module))
            elif type(module) is _Transition:
                check_replaceable(module)
                features.add_module(name, CanonicalTransition(module))
            else:
                features.add_module(name, _canonize_module(module))
            i += 1
        self.features = features
        # head: F.relu(norm5(x)) -> avg pool -> classifier; the BN affine commutes with the average
        self.thresh5, scale, shift = threshold(norm)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        classifier = expect(model.classifier, (nn.Linear,), "the classifier nn.Linear")
        check_replaceable(classifier)
        weight = classifier.weight.detach()
        bias = classifier.bias.detach() if classifier.bias is not None else torch.zeros_like(weight[:, 0])
        self.classifier = TensorBiasedLinear(weight * scale[None, :], weight @ shift + bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.thresh5(self.features(x)))))


# ----------------------------------------------------------------------------------------- generic
def _sequential(seq: nn.Sequential, whole: bool) -> nn.Sequential:
    """A copy of ``seq`` (its own hooks kept: its input and output are unchanged) whose children are canonized
    and, when ``whole`` (nothing calls a part of it), whose Conv/Linear -> BN pairs are fused (the fused layer
    takes the conv's slot, the BN's slot is dropped)."""
    inner = whole and _calls_children_whole(seq)
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
        children[name] = None if module is None else _canonize_module(module, inner)
        i += 1
    return with_children(seq, children)


def _runs_sequentially(module: nn.Module) -> bool:
    """An ``nn.Sequential`` or a subclass running its forward (torchvision's ``Conv2dNormActivation``): child
    ``i``'s output is child ``i + 1``'s input and nothing else's."""
    cls = type(module)
    return (isinstance(module, nn.Sequential) and cls.forward is nn.Sequential.forward
            and cls.__iter__ is nn.Sequential.__iter__ and _plain_call(cls))


def _plain_call(cls: type) -> bool:
    return cls.__call__ is nn.Module.__call__ and cls._call_impl is nn.Module._call_impl


#: torchvision classes whose forward calls every child module whole: never an item or a slice of a
#: Sequential child, never a child's parameters (read from the torchvision 0.29 sources; exact classes only)
_CALLS_CHILDREN_WHOLE = frozenset({
    AlexNet, VGG, squeezenet.SqueezeNet, squeezenet.Fire,
    mobilenetv2.MobileNetV2, mobilenetv2.InvertedResidual, mobilenetv3.MobileNetV3, mobilenetv3.InvertedResidual,
    efficientnet.EfficientNet, efficientnet.MBConv, efficientnet.FusedMBConv, SqueezeExcitation,
    regnet.RegNet, regnet.ResBottleneckBlock, mnasnet.MNASNet, mnasnet._InvertedResidual,
    shufflenetv2.ShuffleNetV2, shufflenetv2.InvertedResidual,
})


def _calls_children_whole(module: nn.Module) -> bool:
    """A plain sequential (:func:`_runs_sequentially`) or one of the torchvision classes whose forward calls its
    children whole (``_CALLS_CHILDREN_WHOLE``), with no hooks and no method replaced on the instance."""
    cls = type(module)
    if not (_runs_sequentially(module) or (cls in _CALLS_CHILDREN_WHOLE and _plain_call(cls))):
        return False
    return not any(getattr(module, kind, None) for kind in HOOKS) and not patched_methods(module)


def structure_suffices(model: nn.Module) -> bool:
    """Whether the module structure alone shows every dataflow that Sequential fusion relies on.

    True when every module with children calls them whole (:func:`_calls_children_whole`). Then a
    Conv/Linear followed by a batch norm inside a sequential feeds only that batch norm, wherever the
    sequential is called, and fusing them needs no trace. A forward that could call ``seq[0]`` or
    ``seq[:2]`` alone (any other class) is left to the traced graph.
    """
    return all(_calls_children_whole(m) for m in model.modules() if m._modules)


#: torchvision classes rebuilt from what their forward is known to compute (exact classes only)
_REBUILT = {ResNet: CanonicalResNet, DenseNet: CanonicalDenseNet, Bottleneck: CanonicalBottleneck,
            BasicBlock: CanonicalBasicBlock}


def _canonize_module(module: nn.Module, whole: bool = True) -> nn.Module:
    """The canonized copy of ``module``; ``whole``: every ancestor calls its children whole (so the Conv -> BN
    pairs of a sequential below may be fused: no forward calls a part of it)."""
    module = unwrap(module)
    rebuild = _REBUILT.get(type(module))
    if rebuild is not None:
        check_replaceable(module)
        return rebuild(module)
    if _runs_sequentially(module):
        return _sequential(module, whole)
    inner = whole and _calls_children_whole(module)
    return copy_tree(module, lambda child: _canonize_module(child, inner))


# ------------------------------------------------------------------------------------------- public
def canonize(model: nn.Module, *, verify: bool = True, example_input: Tensor | None = None,
             rtol: float = 1e-6) -> nn.Module:
    """A new model computing the same function as ``model``, on which LRP rules are meaningful.

    Parameters
    ----------
    model : nn.Module
        In eval mode (batch norm must use its running statistics). Not modified.
    verify : bool
        Compare both models in float64 on ``example_input`` (or a random input of the right shape)
        and raise :class:`CanonizationError`, naming the first differing module, if the max abs
        logit difference exceeds ``rtol`` times the largest logit.
    example_input : Tensor, optional
        Input for the verification (default: ``randn(2, C, 64, 64)`` for the first conv's ``C``).

    Returns
    -------
    nn.Module
        The canonized model (shares the parameters of the layers it did not change).
    """
    model = unwrap(model)
    try:
        check_eval_mode(model)
    except RuntimeError as error:
        raise CanonizationError(str(error)) from None
    work = expand(model)  # (timm's batch norms with their activation inside: split into plain modules)
    if not any(isinstance(m, BN) for m in work.modules()):
        canonical = structural_copy(work)  # nothing to fuse
    else:
        canonical = _canonize_with_norms(work, model)
    _mark_eval(canonical)
    if verify:
        _verify(model, canonical, example_input, rtol)
    return canonical


def _canonize_with_norms(model: nn.Module, user: nn.Module) -> nn.Module:
    """From the module structure where it shows every fusion (no trace: 10-17 ms instead of 40-55 ms on the small
    torchvision models); otherwise from the traced graph (every BN pattern, wherever it is); from the module
    structure again, as a fallback, if the model does not trace. ``model`` is the user's model ``user`` or a
    copy of it; modules of either are never edited."""
    from .graph import TraceError, canonize_graph

    structural = _structural(model) if structure_suffices(model) else None
    if structural is not None and not any(isinstance(m, BN) for m in structural.modules()):
        return structural
    try:
        return canonize_graph(model)
    except TraceError as error:
        reason = str(error)
    canonical = structural if structural is not None else _structural(model)
    _keep_as_affine(canonical, model, user)
    left = [name for name, m in canonical.named_modules() if isinstance(m, BN)]
    if left:
        raise CanonizationError(
            f"could not fuse the batch norm(s) {left}: torch.fx could not trace the model ({reason[:300]}), and "
            "from the module structure only Conv/Linear -> BatchNorm pairs inside sequentials that nothing calls "
            "in part and torchvision ResNet/DenseNet blocks are fused, and only exact BatchNorm classes are kept as "
            "per-channel affine layers; make the forward traceable or fuse them by hand")
    return canonical


def _keep_as_affine(canonical: nn.Module, *models: nn.Module) -> None:
    """Batch norms (exact classes) left unfused in the canonized copy become :class:`ChannelAffine` layers, in
    place: the same function wherever and however they are called. Modules of ``models`` are never edited."""
    users = {id(m) for model in models for m in model.modules()}
    for module in list(canonical.modules()):
        if id(module) in users:
            continue
        for name, child in module._modules.items():
            if type(child) in NORMS:
                check_replaceable(child)
                module.__dict__["_modules"][name] = ChannelAffine(*bn_affine(child))


def _structural(model: nn.Module) -> nn.Module:
    """:func:`_canonize_module` with the model's qualified names at hand for messages."""
    names = NAMES.set({id(m): name or type(model).__name__ for name, m in model.named_modules()})
    try:
        return _canonize_module(model)
    finally:
        NAMES.reset(names)


def _mark_eval(canonical: nn.Module) -> None:
    """Eval flags on the new modules, written into their ``__dict__``; copies of the user's own classes
    keep their flags (their forward may read ``self.training``)."""
    for module in canonical.modules():
        if type(module).__module__.startswith(("seqlrp.", "torch.nn.", "torch.fx.")) and not mode_dependent(module):
            module.__dict__["training"] = False


def _example(model: nn.Module) -> Tensor:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return torch.randn(2, m.in_channels, 64, 64, generator=torch.Generator().manual_seed(0))
        if isinstance(m, nn.Conv1d):
            return torch.randn(2, m.in_channels, 64, generator=torch.Generator().manual_seed(0))
        if isinstance(m, nn.Linear):
            return torch.randn(2, m.in_features, generator=torch.Generator().manual_seed(0))
    raise CanonizationError("cannot guess an input shape for verification: pass example_input=")


def _float64_outputs(model: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Run a structural copy of ``model`` in float64; record module outputs by qualified name."""
    work = structural_copy(model)
    params = {k: v.detach().double() if v.is_floating_point() else v
              for k, v in list(work.named_parameters()) + list(work.named_buffers())}
    outputs = record_outputs(work, select=lambda name, module: bool(name))
    with torch.no_grad():
        out = torch.func.functional_call(work, params, (x.double(),))
    return out, outputs


def _verify(model: nn.Module, canonical: nn.Module, example_input: Tensor | None, rtol: float) -> None:
    x = _example(model) if example_input is None else example_input.detach()
    try:
        reference, ref_outputs = _float64_outputs(model, x)
    except RuntimeError as error:
        raise CanonizationError(f"verification failed: the model's forward on an input of shape {tuple(x.shape)} "
                                f"raised {type(error).__name__}: {error} (pass example_input= of the right shape)") \
            from None
    ours, our_outputs = _float64_outputs(canonical, x)
    if ours.shape != reference.shape:
        raise CanonizationError(f"canonized output shape {tuple(ours.shape)} != original {tuple(reference.shape)}")
    diff = float((ours - reference).abs().max())
    scale = max(float(reference.abs().max()), 1e-30)
    if not math.isfinite(diff) or diff > rtol * scale:
        first = next((name for name, value in our_outputs.items() if name in ref_outputs
                      and isinstance(value, Tensor) and isinstance(ref_outputs[name], Tensor)
                      and ref_outputs[name].shape == value.shape
                      and float((ref_outputs[name] - value).abs().max()) > rtol * max(float(value.abs().max()), 1e-30)),
                     None)
        raise CanonizationError(f"the canonized model differs from the original: max |logit diff| {diff:.3e} "
                                f"(max |logit| {scale:.3e}); first differing module: {first!r}")
