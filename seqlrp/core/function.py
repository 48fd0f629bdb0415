"""The mechanism: one ``autograd.Function`` per wrapped layer.

Its forward runs the real layer. Its backward receives the relevance of the output in place of
the gradient, lets the layer's rule rebuild the modified layer from the saved inputs and
parameters (a modified forward plus one vector-Jacobian product), and returns the relevance of
the inputs. Relevance then flows through the model along the gradient's graph, batched, on
whatever device the tensors live on.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .nodes import NONNEGATIVE_SOURCES, SIGN_KEEPING
from .rules.base import Rule
from .stochastic import unwatched
from .views import View


@dataclass
class LayerCall:
    """One execution of a wrapped layer; the backward fills in the relevance sums (per sample)."""

    name: str
    module_type: str
    rule: Rule
    view: View
    relevance_out: Tensor | None = field(default=None, repr=False)
    relevance_in: Tensor | None = field(default=None, repr=False)
    #: per-sample sum of |R_out|: the scale against which conservation is judged
    magnitude: Tensor | None = field(default=None, repr=False)
    #: per input: known >= 0 from the graph (a ReLU upstream), found without reading values
    nonnegative: tuple[bool, ...] = ()
    output_nonnegative: bool = False
    #: the output relevance is provably 0 wherever the output is <= 0 (see :mod:`seqlrp.core.gating`)
    gated: bool = False

    #: what the backward records: "sums" (relevance in/out per sample), "full" (also sum |R_out|), "none"
    level: str = "sums"
    #: the layer's forward draws no random numbers (an exact deterministic class, or an op a functional rule
    #: took): it runs without the stochastic watch
    quiet: bool = False

    def record(self, relevance_out: Tensor, relevance_in: tuple[Tensor | None, ...]) -> None:
        # per-sample sums stay on the device: no host synchronisation in the backward
        if self.level == "none":
            return
        self.relevance_out = _per_sample_sum(relevance_out)
        batch = self.relevance_out.shape[0] if self.relevance_out.dim() else 1
        # (an input without the batch dimension, broadcast over it, is shared by all samples alike)
        total = None
        for r in relevance_in:
            if r is not None:
                part = _per_sample_sum(r) if r.dim() and r.shape[0] == batch else r.sum() / batch
                total = part if total is None else total + part
        self.relevance_in = 0 if total is None else total  # (no ``sum()``: its 0 + t is one more op per layer)
        if self.level == "full":
            r = relevance_out.detach()
            self.magnitude = r.abs() if r.dim() == 1 else torch.linalg.vector_norm(r, 1, dim=tuple(range(1, r.dim())))


def _per_sample_sum(t: Tensor) -> Tensor:
    """Per-sample sum, cached on the tensor: a layer's input relevance is its producer's output relevance."""
    cached = getattr(t, "_seqlrp_sum", None)
    if cached is not None and cached[0] == t._version:
        return cached[1]
    d = t.detach()
    # (the per_sample_total reduction, without its keepdim: the (B,) result directly, one op less per sum)
    total = d.sum(tuple(range(1, d.dim()))) if d.dim() > 1 else d.clone() if d.dim() else d
    t._seqlrp_sum = (t._version, total)
    return total


class LRPFunction(torch.autograd.Function):
    """``forward(call, *inputs)`` = the real layer; ``backward(R_out)`` = the rule's relevance.

    In-place ops on the layer's output (``F.relu(conv(x), inplace=True)``, ``y = conv(x); y += x``) are
    allowed: the output is kept as a detached alias (same storage and version counter, no reference
    cycle) instead of a saved tensor, and if its version moved on, the backward recomputes it from the
    saved inputs. A layer *input* changed in place after the layer ran cannot be recovered: the backward
    raises an error naming the layer.
    """

    @staticmethod
    def forward(ctx, call: LayerCall, *inputs: Tensor) -> Tensor:
        call.nonnegative = tuple(known_nonnegative(t) for t in inputs)
        call.output_nonnegative = call.view.output_nonnegative(call.nonnegative)
        # (no functional rules apply inside a layer: grad mode is off here, so the mode would only pass each op on)
        with torch._C.DisableTorchFunction(), unwatched() if call.quiet else nullcontext():
            return LRPFunction._run(ctx, call, inputs)

    @staticmethod
    def _run(ctx, call: LayerCall, inputs: tuple[Tensor, ...]) -> Tensor:
        out, state = call.view.forward_saving(*inputs)
        ctx.set_materialize_grads(False)  # no relevance arrives (a gate's branch): the backward does nothing
        ctx.call = call
        ctx.has_state = state is not None
        ctx.save_for_backward(*inputs, *(() if state is None else (state,)))
        ctx.out, ctx.out_version = out.detach(), out._version
        return out

    @staticmethod
    def backward(ctx, relevance: Tensor | None):
        call: LayerCall = ctx.call
        if relevance is None:
            ctx.out = None
            return (None,) * len(ctx.needs_input_grad)
        try:
            saved = ctx.saved_tensors
        except RuntimeError as error:
            raise RuntimeError(
                f"the input of layer {call.name!r} ({call.module_type}) was changed by an in-place operation after "
                "the layer ran, so its relevance cannot be computed; write that operation out of place (x = x + y "
                f"instead of x += y, torch.relu(x) instead of x.relu_()). PyTorch: {str(error).splitlines()[0]}"
            ) from None
        state = saved[-1] if ctx.has_state else None
        inputs = saved[:-1] if ctx.has_state else saved
        out = ctx.out
        if out._version != ctx.out_version:  # changed in place after the layer: recompute it
            out = call.view.forward(*inputs)
        ctx.out = None  # (released as a saved tensor would be)
        extra = {"gated": True} if call.gated else {}
        relevance_in = call.rule.relevance(call.view.bind(state), inputs, out, relevance, call.nonnegative, **extra)
        call.record(relevance, relevance_in)
        return (None, *relevance_in)




def known_nonnegative(t: Tensor, budget: int = 32) -> bool:
    """True when the graph proves ``t >= 0`` (a ReLU upstream through routing ops); no values read."""
    if t.grad_fn is None:
        return False
    stack, seen = [t.grad_fn], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > budget:
            return False
        call = getattr(node, "call", None)
        if isinstance(call, LayerCall):
            if not call.output_nonnegative:
                return False
            continue
        name = type(node).__name__
        if name in NONNEGATIVE_SOURCES:
            continue
        if name not in SIGN_KEEPING:
            return False
        stack.extend(child for child, _ in node.next_functions if child is not None)
    return True
