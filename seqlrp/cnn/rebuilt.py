"""torchvision ResNet and DenseNet rebuilt from what their forward is known to compute (exact classes only).

* ResNets: each residual ``out + identity`` becomes an explicit :class:`~seqlrp.core.ops.Sum`; the ReLU
  module the blocks reuse becomes one module per use; Conv -> BN pairs are fused.
* DenseNets: ``BN -> ReLU -> Conv`` becomes ``ThreshReLU -> TensorBiasedConv2d`` (the BN fused into the
  *next* conv, with a spatial bias map); the ``torch.cat`` before each layer becomes a :class:`Concat`
  module; the functional ``F.relu``/``F.adaptive_avg_pool2d`` of the head become modules:
  ``ThreshReLU -> AdaptiveAvgPool2d -> TensorBiasedLinear``.

:data:`REBUILT` is the table of :class:`seqlrp.cnn.canonizers.ClassRebuild`; the submodules they keep are
canonized by the current structural walk (:func:`seqlrp.cnn.canonizer.walk`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.densenet import DenseNet, _DenseBlock, _DenseLayer, _Transition
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ..core.copying import structural_copy
from ..core.ops import Sum
from .batchnorm import (
    FUSABLE,
    NORMS,
    CanonizationError,
    check_replaceable,
    expect,
    fuse,
    module_name,
    threshold,
    threshold_and_fuse,
)
from .canonizer import walk
from .layers import TensorBiasedLinear


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
        self.downsample = walk(block.downsample) if block.downsample is not None else None
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
        self.downsample = walk(block.downsample) if block.downsample is not None else None
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
            self.add_module(name, walk(getattr(model, name)))
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
                features.add_module(name, walk(module))
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


#: torchvision classes rebuilt from what their forward is known to compute (exact classes only)
REBUILT = {ResNet: CanonicalResNet, DenseNet: CanonicalDenseNet, Bottleneck: CanonicalBottleneck,
           BasicBlock: CanonicalBasicBlock}
