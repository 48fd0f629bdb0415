"""``benchmarks/flops.py``: the convolution and matrix-product FLOPs behind the FLOP bound of the speed tables."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.flops import matmul_flops


def test_counts_convolutions_their_transposes_and_matrix_products():
    x = torch.randn(2, 6, 9, 9, requires_grad=True)
    w = torch.randn(8, 3, 3, 3)  # groups=2: 3 input channels per output channel
    per_conv = 2 * (2 * 8 * 7 * 7) * (3 * 3 * 3)
    assert matmul_flops(lambda: F.conv2d(x.detach(), w, groups=2)) == per_conv

    def gradient():
        out = F.conv2d(x, w, groups=2)
        torch.autograd.grad(out.sum(), x)  # (the input transpose only: the weight needs no gradient)

    assert matmul_flops(gradient) == 2 * per_conv
    a, b = torch.randn(5, 7), torch.randn(7, 4)
    assert matmul_flops(lambda: a @ b) == 2 * 5 * 7 * 4
    assert matmul_flops(lambda: F.linear(a, b.T, torch.zeros(4))) == 2 * 5 * 7 * 4
    assert matmul_flops(lambda: a.relu()) == 0
