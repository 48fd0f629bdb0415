"""Coverage: which module got which rule, and which graph nodes mix values without a rule.

Relevance flows backwards along the autograd graph. Nodes created by wrapped layers apply a rule;
nodes of ops that only route values (views, indexing, cat, ...) pass relevance on unchanged and
are fine. Every other node between the input and the output -- a functional ``+``, ``mean``,
``torch.tanh`` ... -- sends relevance back by the plain gradient, which is almost never what an
LRP rule would do. The coverage report names them so a user sees where that happened.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from torch import Tensor

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
    "NoneBackward0", "WhereBackward0", "TapBackward", "CopySlices", "CopyBackwards",
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
_WRAPPED = re.compile(r"^(LRPFunction|FusedLSTMLayer)Backward")


@dataclass
class Coverage:
    """What the backward will do.

    Attributes
    ----------
    rules : dict[str, str]
        qualified module name -> ``"Type: rule(params)"`` for every wrapped layer that ran.
    unruled : dict[str, int]
        graph node name -> count, for nodes between input and output that mix values without a rule
        (their relevance takes the plain-gradient route).
    gradient_relu : int
        functional ReLUs (``F.relu``/``torch.relu``) met: they act like the pass rule on positive units.
    """

    rules: dict[str, str] = field(default_factory=dict)
    unruled: dict[str, int] = field(default_factory=dict)
    gradient_relu: int = 0

    @property
    def complete(self) -> bool:
        return not self.unruled

    def __str__(self) -> str:
        lines = [f"{name}: {rule}" for name, rule in self.rules.items()]
        if self.unruled:
            lines.append("ops without a rule (plain-gradient route): "
                         + ", ".join(f"{k} x{v}" for k, v in self.unruled.items()))
        if self.gradient_relu:
            lines.append(f"functional ReLUs (pass-like): {self.gradient_relu}")
        return "\n".join(lines)


def graph_coverage(output: Tensor, inputs: tuple[Tensor, ...], rules: dict[str, str]) -> Coverage:
    """Walk the autograd graph from ``output`` back to ``inputs`` and classify every node on the way."""
    targets = {id(t) for t in inputs}
    reaches: dict[int, bool] = {}
    counts: Counter[str] = Counter()

    def children(node):
        """The inputs relevance flows to: a wrapped op's silent inputs (a gate) get none, so are not followed."""
        edges = node.next_functions
        call = getattr(node, "call", None)
        silent = getattr(getattr(call, "view", None), "silent", ()) if call is not None else ()
        return iter(edge for i, edge in enumerate(edges) if i not in silent)  # (one edge per tensor input)

    def visit(node) -> bool:
        # iterative DFS (deep unrolled RNN graphs would overflow the recursion limit)
        stack = [(node, children(node))]
        reaches[id(node)] = _is_input(node, targets)
        while stack:
            current, pending = stack[-1]
            for child, _ in pending:
                if child is None:
                    continue
                if id(child) not in reaches:
                    reaches[id(child)] = _is_input(child, targets)
                    stack.append((child, children(child)))
                    break
                if reaches[id(child)]:
                    reaches[id(current)] = True
            else:
                stack.pop()
                if stack and reaches[id(current)]:
                    reaches[id(stack[-1][0])] = True
                if reaches[id(current)]:
                    counts[type(current).__name__] += 1
        return reaches[id(node)]

    if output.grad_fn is not None:
        visit(output.grad_fn)
    unruled = {k: v for k, v in sorted(counts.items())
               if k not in ROUTING_NODES and k not in RELU_NODES and not _WRAPPED.search(k)}
    relu = sum(v for k, v in counts.items() if k in RELU_NODES)
    return Coverage(dict(rules), unruled, relu)


def _is_input(node, targets: set[int]) -> bool:
    variable = getattr(node, "variable", None)
    return variable is not None and id(variable) in targets
