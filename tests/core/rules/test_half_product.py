"""The half rule on a product of two signals, against its formula (float64), with a broadcast factor."""

from __future__ import annotations

import torch

import seqlrp
from seqlrp.core.function import LayerCall, LRPFunction
from seqlrp.core.ops import Product
from seqlrp.recurrent.ops import SignalProductView


def test_each_factor_gets_half_of_the_product_s_share():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 5, dtype=torch.float64, generator=g).requires_grad_(True)
    b = torch.randn(3, 1, 5, dtype=torch.float64, generator=g).requires_grad_(True)  # (broadcast over dim 1)
    r = torch.randn(3, 4, 5, dtype=torch.float64, generator=g)
    rule = seqlrp.rules.get("half_product", epsilon=0.1)
    view = SignalProductView(Product())
    assert rule.applies_to(view) and view.silent == ()
    out = LRPFunction.apply(LayerCall("p", "Product", rule, view), a, b)
    r_a, r_b = torch.autograd.grad(out, (a, b), r)
    z = (a * b).detach()
    share = 0.5 * z / (z + 0.1 * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)) * r
    torch.testing.assert_close(r_a, share, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(r_b, share.sum(1, keepdim=True), rtol=1e-12, atol=1e-14)
    rule0 = seqlrp.rules.get("half_product", epsilon=0.0)
    out = LRPFunction.apply(LayerCall("p", "Product", rule0, view), a, b)
    r_a, r_b = torch.autograd.grad(out, (a, b), r)
    torch.testing.assert_close(r_a.sum() + r_b.sum(), r.sum(), rtol=1e-12, atol=1e-12)  # conserves at ε = 0
