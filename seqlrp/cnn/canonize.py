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
from contextvars import ContextVar

import torch
from torch import Tensor, nn
from torchvision.models.densenet import DenseNet, _DenseBlock, _DenseLayer, _Transition
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ..core.checks import check_eval_mode, mode_dependent
from ..core.copying import copy_tree, record_outputs, shallow_copy, structural_copy, unwrap
from ..core.ops import Sum
from .layers import TensorBiasedConv2d, TensorBiasedLinear, ThreshReLU

_BN = nn.modules.batchnorm._BatchNorm


class CanonizationError(RuntimeError):
    """The model could not be canonized (names the modules) or the canonized model differs."""


class Concat(nn.Module):
    """``torch.cat(inputs, dim)`` as a module (routing: relevance passes to each part)."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: Tensor) -> Tensor:
        return torch.cat(inputs, self.dim)


# --------------------------------------------------------------------------------------------- BN math
def _bn_affine(bn: _BN) -> tuple[Tensor, Tensor]:
    """``BN(x) = scale * x + shift`` per channel (eval mode, running statistics)."""
    if not bn.track_running_stats or bn.running_mean is None:
        raise CanonizationError(f"{type(bn).__name__} without running statistics cannot be fused")
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    scale = gamma / std
    return scale.detach(), (beta - bn.running_mean * scale).detach()


_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
#: qualified names of the modules of the model being canonized (for messages)
_NAMES: ContextVar[dict[int, str] | None] = ContextVar("seqlrp_canonize_names", default=None)


def _check_no_hooks(*modules: nn.Module) -> None:
    """Canonization replaces these modules: hooks on them would see other values, so refuse them."""
    for module in modules:
        hooks = [kind.strip("_").replace("_", " ") for kind in _HOOKS if getattr(module, kind, None)]
        if hooks:
            name = (_NAMES.get() or {}).get(id(module), "?")
            raise CanonizationError(
                f"module {name!r} ({type(module).__name__}) has {', '.join(hooks)}; canonization replaces it by a "
                "new layer (batch norm fused), where the hooks would see other values. Remove them "
                "(handle.remove()) before explaining")


def fuse(layer: nn.Module, bn: _BN) -> nn.Module:
    """A new Conv/Linear computing ``bn(layer(x))`` (new tensors; the user's layers are only read)."""
    _check_no_hooks(layer, bn)
    scale, shift = _bn_affine(bn)
    fused = shallow_copy(layer)  # same hyper-parameters, fresh containers, new tensors below
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    with torch.no_grad():
        weight = layer.weight * scale.view(shape).to(layer.weight.dtype)
        bias = shift if layer.bias is None else layer.bias * scale + shift
    fused.__dict__["_parameters"] = {"weight": nn.Parameter(weight.detach(), layer.weight.requires_grad),
                                     "bias": nn.Parameter(bias.detach().to(layer.weight.dtype),
                                                          layer.weight.requires_grad)}
    return fused


def _threshold(bn: _BN) -> tuple[ThreshReLU, Tensor, Tensor]:
    """``ReLU(bn(x)) = scale * ThreshReLU(x) + shift``: the ThreshReLU and the BN affine to fuse onwards."""
    scale, shift = _bn_affine(bn)
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


def threshold_and_fuse(bn: _BN, conv: nn.Conv2d) -> tuple[ThreshReLU, TensorBiasedConv2d]:
    """``conv(ReLU(bn(x)))`` as ``TensorBiasedConv2d(ThreshReLU(x))`` (see :class:`ThreshReLU`)."""
    _check_no_hooks(bn, conv)
    thresh, scale, shift = _threshold(bn)
    return thresh, TensorBiasedConv2d(conv, scale, shift)


# ----------------------------------------------------------------------------------------- ResNet
class CanonicalBasicBlock(nn.Module):
    def __init__(self, block: BasicBlock):
        super().__init__()
        self.conv1, self.relu1 = fuse(block.conv1, block.bn1), nn.ReLU()
        self.conv2 = fuse(block.conv2, block.bn2)
        self.downsample = _sequential(block.downsample) if block.downsample is not None else None
        self.sum, self.relu2 = Sum(), nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.sum(self.conv2(self.relu1(self.conv1(x))), identity))


class CanonicalBottleneck(nn.Module):
    def __init__(self, block: Bottleneck):
        super().__init__()
        self.conv1, self.relu1 = fuse(block.conv1, block.bn1), nn.ReLU()
        self.conv2, self.relu2 = fuse(block.conv2, block.bn2), nn.ReLU()
        self.conv3 = fuse(block.conv3, block.bn3)
        self.downsample = _sequential(block.downsample) if block.downsample is not None else None
        self.sum, self.relu3 = Sum(), nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.relu3(self.sum(out, identity))


class CanonicalResNet(nn.Module):
    """torchvision ResNet/ResNeXt/Wide-ResNet with fused BNs, explicit sums and one ReLU per use."""

    def __init__(self, model: ResNet):
        super().__init__()
        self.conv1, self.relu = fuse(model.conv1, model.bn1), nn.ReLU()
        self.maxpool = structural_copy(model.maxpool)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            blocks = [CanonicalBottleneck(b) if isinstance(b, Bottleneck) else CanonicalBasicBlock(b)
                      for b in getattr(model, name)]
            setattr(self, name, nn.Sequential(*blocks))
        self.avgpool, self.flatten, self.fc = structural_copy(model.avgpool), nn.Flatten(1), structural_copy(model.fc)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


# --------------------------------------------------------------------------------------- DenseNet
class CanonicalDenseLayer(nn.Module):
    def __init__(self, layer: _DenseLayer):
        super().__init__()
        self.cat = Concat(1)
        self.thresh1, self.conv1 = threshold_and_fuse(layer.norm1, layer.conv1)
        self.thresh2, self.conv2 = threshold_and_fuse(layer.norm2, layer.conv2)

    def forward(self, *features: Tensor) -> Tensor:
        return self.conv2(self.thresh2(self.conv1(self.thresh1(self.cat(*features)))))


class CanonicalDenseBlock(nn.ModuleDict):
    def __init__(self, block: _DenseBlock):
        super().__init__({name: CanonicalDenseLayer(layer) for name, layer in block.items()})
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
        self.thresh, self.conv = threshold_and_fuse(transition.norm, transition.conv)
        self.pool = structural_copy(transition.pool)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(self.thresh(x)))


class CanonicalDenseNet(nn.Module):
    """torchvision DenseNet: ThreshReLU + tensor-biased convs; explicit cat; modules for the head."""

    def __init__(self, model: DenseNet):
        super().__init__()
        features = nn.Sequential()
        source = model.features
        features.add_module("conv0", fuse(source.conv0, source.norm0))
        features.add_module("relu0", nn.ReLU())
        features.add_module("pool0", structural_copy(source.pool0))
        for name, module in source.named_children():
            if isinstance(module, _DenseBlock):
                features.add_module(name, CanonicalDenseBlock(module))
            elif isinstance(module, _Transition):
                features.add_module(name, CanonicalTransition(module))
        self.features = features
        # head: F.relu(norm5(x)) -> avg pool -> classifier; the BN affine commutes with the average
        self.thresh5, scale, shift = _threshold(source.norm5)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        weight, bias = model.classifier.weight.detach(), model.classifier.bias.detach()
        self.classifier = TensorBiasedLinear(weight * scale[None, :], weight @ shift + bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.thresh5(self.features(x)))))


# ----------------------------------------------------------------------------------------- generic
def _sequential(seq: nn.Sequential) -> nn.Sequential:
    """A copy of ``seq`` whose Conv/Linear -> BN pairs are fused (the BN's slot becomes Identity)."""
    new = nn.Sequential()
    items = list(seq._modules.items())
    i = 0
    while i < len(items):
        name, module = items[i]
        following = items[i + 1][1] if i + 1 < len(items) else None
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and isinstance(following, _BN):
            new.add_module(name, fuse(module, following))
            new.add_module(items[i + 1][0], nn.Identity())
            i += 2
            continue
        new.add_module(name, _canonize_module(module))
        i += 1
    return new


def _canonize_module(module: nn.Module) -> nn.Module:
    module = unwrap(module)
    if isinstance(module, (ResNet, DenseNet, Bottleneck, BasicBlock)):
        _check_no_hooks(*module.modules())  # (the whole block is rebuilt)
    if isinstance(module, ResNet):
        return CanonicalResNet(module)
    if isinstance(module, DenseNet):
        return CanonicalDenseNet(module)
    if isinstance(module, Bottleneck):  # torchvision blocks used inside other models
        return CanonicalBottleneck(module)
    if isinstance(module, BasicBlock):
        return CanonicalBasicBlock(module)
    if type(module) is nn.Sequential:
        return _sequential(module)
    return copy_tree(module, _canonize_module)


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
    names = _NAMES.set({id(m): name or type(model).__name__ for name, m in model.named_modules()})
    try:
        canonical = _canonize_module(model)
    finally:
        _NAMES.reset(names)
    _mark_eval(canonical)
    left = [name for name, m in canonical.named_modules() if isinstance(m, _BN)]
    if left:
        raise CanonizationError(
            f"could not fuse the batch norm(s) {left}: only Conv/Linear -> BatchNorm pairs inside nn.Sequential "
            "and torchvision ResNet/DenseNet/VGG are canonized; fuse them by hand or use nn.Sequential")
    if verify:
        _verify(model, canonical, example_input, rtol)
    return canonical


def _mark_eval(canonical: nn.Module) -> None:
    """Eval flags on the new modules, written into their ``__dict__``; copies of the user's own classes
    keep their flags (their forward may read ``self.training``)."""
    for module in canonical.modules():
        if type(module).__module__.startswith(("seqlrp.", "torch.nn.")) and not mode_dependent(module):
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
    reference, ref_outputs = _float64_outputs(model, x)
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
