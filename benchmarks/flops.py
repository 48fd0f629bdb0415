"""The multiply-add work of a call: the FLOP bound a rule's implementation cannot go below.

``matmul_flops(fn)`` runs ``fn`` once under a dispatch mode and counts 2 FLOPs per multiply-add of every
convolution (forward and input transpose), ``convolution_backward`` output it computes, and matrix
product. Element-wise work is not counted: this is the work the explanation and the gradient share in
kind, so ``matmul_flops(explain) / matmul_flops(gradient)`` is the ratio no implementation of the same
rule could beat on the same kernels.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.utils._python_dispatch import TorchDispatchMode


def _conv_flops(out_numel: int, weight) -> int:
    # each output element: in_channels / groups * kernel multiply-adds (the weight's dims 1..)
    per_output = 1
    for size in weight.shape[1:]:
        per_output *= size
    return 2 * out_numel * per_output


class _Counter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name == "convolution":
            self.flops += _conv_flops(out.numel(), args[1])
        elif name == "convolution_backward":  # (grad_output, input, weight, ..., output_mask)
            grad_output, weight, mask = args[0], args[2], args[-1]
            self.flops += _conv_flops(grad_output.numel(), weight) * (int(mask[0]) + int(mask[1]))
        elif name in ("mm", "addmm", "bmm", "baddbmm"):
            a, b = args[-2], args[-1]
            self.flops += 2 * a.numel() * b.shape[-1]
        return out


def matmul_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the convolutions and matrix products of one call of ``fn``."""
    counter = _Counter()
    with counter:
        fn()
    return counter.flops
