"""Autograd graph node names, in one place: what each kind of node does to values and to relevance.

PyTorch names the backward node of every op (``type(tensor.grad_fn).__name__``: ``"ViewBackward0"``,
``"CatBackward0"``...). The coverage report, the gating proof, the gate detection of functional products and
the sign tracking of layer inputs read the graph by these names; a node PyTorch adds (or renames) is added
here, in the set whose property it has.
"""

from __future__ import annotations

import re

#: graph nodes that move or copy values without mixing them (backward = routing)
ROUTING_NODES = frozenset({
    "AccumulateGrad", "AliasBackward0", "AsStridedBackward0", "CatBackward0", "CloneBackward0",
    "ContiguousBackward0", "ExpandBackward0", "FlipBackward0", "GatherBackward0", "IndexBackward0",
    "IndexSelectBackward0", "NarrowBackward0", "PermuteBackward0", "RepeatBackward0",
    "ReshapeAliasBackward0", "SelectBackward0", "SliceBackward0", "SplitBackward0",
    "SplitWithSizesBackward0", "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2",
    "SqueezeBackward3", "StackBackward0", "TBackward0", "ToCopyBackward0", "TransposeBackward0",
    "TransposeBackward1", "UnbindBackward0", "UnsafeSplitBackward0", "UnsafeViewBackward0",
    "UnsqueezeBackward0", "ViewBackward0", "MaxBackward0", "MaxBackward1", "AmaxBackward0",
    "MaxPool1DWithIndicesBackward0", "MaxPool2DWithIndicesBackward0", "MaxPool3DWithIndicesBackward0",
    "ConstantPadNdBackward0", "PackPaddedSequenceBackward0", "PadPackedSequenceBackward0",
    "NoneBackward0", "WhereBackward0", "TapBackward", "_EmbeddingSlotBackward", "CopySlices", "CopyBackwards",
    "AdaptiveMaxPool1DBackward0", "AdaptiveMaxPool2DBackward0", "AdaptiveMaxPool3DBackward0",
    "MaskedFillBackward0", "ChannelShuffleBackward0", "PixelShuffleBackward0", "PixelUnshuffleBackward0",
    "SqueezeBackwardAutogradNestedTensor0", "RollBackward0",
    # nearest-neighbour upsampling copies each input value to several outputs (HRNet's fuse layers)
    "UpsampleNearest1DBackward0", "UpsampleNearest2DBackward0", "UpsampleNearest3DBackward0",
    "UpsampleNearestExact1DBackward0", "UpsampleNearestExact2DBackward0", "UpsampleNearestExact3DBackward0",
})
#: nodes that are the gradient of a ReLU: relevance of positive units passes, like the pass rule
RELU_NODES = frozenset({"ReluBackward0", "ThresholdBackward0", "ThresholdBackwardBackward0"})

#: nodes of seqlrp's own Functions that apply rules
WRAPPED = re.compile(r"^(LRPFunction|FusedLSTMLayer)Backward")

#: graph nodes that only reshape or copy: a zero stays a zero in the same place
RESHAPING = frozenset({
    "AliasBackward0", "CloneBackward0", "PermuteBackward0", "ReshapeAliasBackward0", "TransposeBackward0",
    "TransposeBackward1", "UnsafeViewBackward0", "ViewBackward0",
})

#: graph nodes a gate's value passes through unchanged in value (reshapes, broadcasts, copies)
GATE_THROUGH = frozenset({
    "AliasBackward0", "CloneBackward0", "ExpandBackward0", "PermuteBackward0", "ReshapeAliasBackward0",
    "SelectBackward0", "SliceBackward0", "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2",
    "TransposeBackward0", "TransposeBackward1", "UnsafeViewBackward0", "UnsqueezeBackward0", "ViewBackward0",
    "RepeatBackward0", "ToCopyBackward0", "MaskedFillBackward0",
})
GATE_NODES = {"SigmoidBackward0": "sigmoid", "HardsigmoidBackward0": "hardsigmoid", "SoftmaxBackward0": "softmax"}

#: graph nodes that keep non-negative values non-negative (routing, max)
SIGN_KEEPING = frozenset({
    "AliasBackward0", "CatBackward0", "CloneBackward0", "ConstantPadNdBackward0", "ExpandBackward0",
    "IndexBackward0", "MaxPool1DWithIndicesBackward0", "MaxPool2DWithIndicesBackward0",
    "MaxPool3DWithIndicesBackward0", "PermuteBackward0", "ReshapeAliasBackward0", "SelectBackward0",
    "SliceBackward0", "SqueezeBackward0", "SqueezeBackward1", "StackBackward0", "ToCopyBackward0",
    "TransposeBackward0", "UnsafeViewBackward0", "UnsqueezeBackward0", "ViewBackward0",
})
NONNEGATIVE_SOURCES = frozenset({"ReluBackward0", "ThresholdBackward0", "SigmoidBackward0"})
