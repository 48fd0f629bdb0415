"""Optional oracle: zennit 1.0 implements the same rules; on the same layer they must agree.

Definitional differences (tested below as such):
* zennit gives zero relevance to an output with ``z == 0`` exactly in Gamma; we treat sign(0) as +1
  (irrelevant for continuous random inputs).
* zennit's Epsilon has no ``bias_factor`` (Arras) -- compared with ``bias_factor=0`` only.
* zennit's ZBox includes the bias in all three terms, which cancels: equal to our default
  ``ignore_bias=True``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqlrp.core.registry import get

from .test_rules_vs_matrix import run_rule

zennit_rules = pytest.importorskip("zennit.rules", reason="zennit (test-only oracle) is not installed")

PAIRS = [
    ("epsilon", {"epsilon": 0.1}, lambda: zennit_rules.Epsilon(epsilon=0.1)),
    ("zero", {"epsilon": 1e-9}, lambda: zennit_rules.Epsilon(epsilon=1e-9)),
    ("gamma", {"gamma": 0.25}, lambda: zennit_rules.Gamma(gamma=0.25)),
    ("gamma", {"gamma": 2.0}, lambda: zennit_rules.Gamma(gamma=2.0)),
    ("zplus", {}, lambda: zennit_rules.ZPlus()),
    ("alpha_beta", {"alpha": 2.0, "beta": 1.0}, lambda: zennit_rules.AlphaBeta(alpha=2.0, beta=1.0)),
    ("zbox", {"low": -2.0, "high": 2.0}, lambda: zennit_rules.ZBox(low=-2.0, high=2.0)),
    ("wsquare", {}, lambda: zennit_rules.WSquare()),
    ("flat", {}, lambda: zennit_rules.Flat()),
]


@pytest.mark.parametrize("name,params,make_zennit", PAIRS, ids=[p[0] + str(i) for i, p in enumerate(PAIRS)])
@pytest.mark.parametrize("layer_id", ["linear", "conv", "conv-strided-groups"])
def test_same_relevance_as_zennit(name, params, make_zennit, layer_id):
    torch.manual_seed(7)
    layer, shape = {
        "linear": (nn.Linear(9, 6), (9,)),
        "conv": (nn.Conv2d(3, 5, 3, padding=1), (3, 8, 8)),
        "conv-strided-groups": (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (4, 9, 9)),
    }[layer_id]
    layer = layer.double()
    x = torch.randn(3, *shape, dtype=torch.float64)
    relevance = torch.randn_like(layer(x))
    _, ours = run_rule(layer, get(name, **params), x, relevance)

    rule = make_zennit()
    handle = rule.register(layer)
    try:
        xz = x.clone().requires_grad_(True)
        (theirs,) = torch.autograd.grad(layer(xz), xz, relevance)
    finally:
        handle.remove()
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
