"""Every rule vs the explicit-matrix reference, on Linear and Conv2d, float64, batch > 1, mixed signs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqlrp.core.function import LayerCall, LRPFunction
from seqlrp.core.registry import get
from seqlrp.core.views import view_of

from .reference import explicit_matrix, lrp_matrix

TOL = 1e-10

RULES = [
    ("zero", {}),
    ("epsilon", {"epsilon": 0.3}),
    ("epsilon", {"epsilon": 0.1, "bias_factor": 1.0}),
    ("epsilon", {"epsilon": 0.1, "bias_factor": 0.5, "ignore_bias": True}),
    ("epsilon", {"epsilon": 0.2, "ignore_bias": True}),
    ("gamma", {"gamma": 0.25}),
    ("gamma", {"gamma": 1.0, "ignore_bias": True}),
    ("alpha_beta", {"alpha": 2.0, "beta": 1.0}),
    ("alpha_beta", {"alpha": 1.5, "beta": 0.5, "ignore_bias": True}),
    ("zplus", {}),
    ("zbox", {"low": -1.5, "high": 2.0}),
    ("zbox", {"low": -1.0, "high": 1.0, "ignore_bias": False}),
    ("wsquare", {}),
    ("wsquare", {"ignore_bias": True}),
    ("flat", {}),
    ("flat", {"ignore_bias": False}),
]


def _layers():
    torch.manual_seed(0)
    yield "linear", nn.Linear(7, 5), (7,)
    yield "linear-nobias", nn.Linear(6, 4, bias=False), (6,)
    yield "conv", nn.Conv2d(3, 4, 3), (3, 6, 6)
    yield "conv-stride-pad", nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 7, 7)
    yield "conv-groups", nn.Conv2d(4, 6, 3, padding=1, groups=2), (4, 5, 5)
    yield "conv-dilation-nobias", nn.Conv2d(2, 3, 3, dilation=2, padding=2, bias=False), (2, 6, 6)
    yield "conv-depthwise-stride", nn.Conv2d(3, 3, 2, stride=2, groups=3), (3, 6, 6)
    yield "conv1d", nn.Conv1d(2, 3, 3, padding=1), (2, 8)
    yield "conv3d", nn.Conv3d(2, 2, 2, stride=1, padding=1), (2, 3, 3, 3)


LAYERS = list(_layers())


def run_rule(layer, rule, x, relevance):
    """Our mechanism: one LRPFunction, relevance fed in as the 'gradient'."""
    view = view_of(layer)
    call = LayerCall("layer", type(layer).__name__, rule, view)
    x = x.clone().requires_grad_(True)
    out = LRPFunction.apply(call, x)
    (r,) = torch.autograd.grad(out, x, relevance)
    return out, r


@pytest.mark.parametrize("rule_name,params", RULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(RULES)])
@pytest.mark.parametrize("layer_id,layer,in_shape", LAYERS, ids=[entry[0] for entry in LAYERS])
def test_rule_matches_explicit_matrix(rule_name, params, layer_id, layer, in_shape):
    layer = layer.double()
    gen = torch.Generator().manual_seed(hash((rule_name, layer_id)) % 2**31)
    batch = 3
    x = torch.randn(batch, *in_shape, dtype=torch.float64, generator=gen)
    out = layer(x)
    relevance = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    rule = get(rule_name, **params)
    ours_out, ours = run_rule(layer, rule, x, relevance)
    assert torch.equal(ours_out, out), "the wrapped forward must be the real layer"

    M = explicit_matrix(lambda t: type(layer).forward(_nobias(layer), t), in_shape)
    conn = explicit_matrix(lambda t: type(layer).forward(_ones(layer), t), in_shape)
    bias = None if layer.bias is None else (out[0] - (M @ x[0].reshape(-1)).reshape(out.shape[1:])).reshape(-1)
    for i in range(batch):
        extra = {}
        if rule_name == "zbox":
            n = x[i].numel()
            extra = {"low": torch.full((n,), params["low"], dtype=torch.float64),
                     "high": torch.full((n,), params["high"], dtype=torch.float64)}
        expected = lrp_matrix(rule_name, M, x[i].reshape(-1), bias, relevance[i].reshape(-1), conn=conn,
                              **extra, **{k: v for k, v in params.items() if k not in ("low", "high")},
                              **({} if "epsilon" in params else {"epsilon": rule.epsilon}))
        torch.testing.assert_close(ours[i].reshape(-1), expected, rtol=TOL, atol=TOL)


def _nobias(layer):
    clone = type(layer).__new__(type(layer))
    clone.__dict__ = dict(layer.__dict__)
    clone._parameters = dict(layer._parameters, bias=None)
    return clone


def _ones(layer):
    clone = _nobias(layer)
    clone._parameters["weight"] = torch.ones_like(layer.weight)
    return clone


def test_zbox_with_tensor_bounds_per_channel():
    torch.manual_seed(1)
    layer = nn.Conv2d(3, 2, 3, padding=1).double()
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64) * 4 - 2
    low = torch.tensor([-2.0, -1.5, -2.5], dtype=torch.float64).view(1, 3, 1, 1)
    high = torch.tensor([2.0, 2.5, 1.5], dtype=torch.float64).view(1, 3, 1, 1)
    out = layer(x)
    relevance = torch.randn_like(out)
    _, ours = run_rule(layer, get("zbox", low=low, high=high), x, relevance)
    M = explicit_matrix(lambda t: type(layer).forward(_nobias(layer), t), (3, 5, 5))
    for i in range(2):
        expected = lrp_matrix("zbox", M, x[i].reshape(-1), None, relevance[i].reshape(-1),
                              low=low.expand(1, 3, 5, 5).reshape(-1), high=high.expand(1, 3, 5, 5).reshape(-1))
        torch.testing.assert_close(ours[i].reshape(-1), expected, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AvgPool2d(3, stride=2, padding=1),
                                  nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                                  nn.AdaptiveAvgPool2d((2, 3))], ids=str)
@pytest.mark.parametrize("bias_factor", [0.0, 1.0])
def test_average_pooling_epsilon_vs_matrix(pool, bias_factor):
    torch.manual_seed(2)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    out = pool(x)
    relevance = torch.randn_like(out)
    rule = get("epsilon", epsilon=0.05, bias_factor=bias_factor)
    _, ours = run_rule(pool, rule, x, relevance)
    M = explicit_matrix(pool, (2, 6, 6))
    conn = (M != 0).double()
    for i in range(2):
        expected = lrp_matrix("epsilon", M, x[i].reshape(-1), None, relevance[i].reshape(-1), conn=conn,
                              epsilon=0.05, bias_factor=bias_factor)
        torch.testing.assert_close(ours[i].reshape(-1), expected, rtol=TOL, atol=TOL)


def test_max_pooling_winner_takes_all():
    torch.manual_seed(3)
    pool = nn.MaxPool2d(2)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    out = pool(x)
    relevance = torch.randn_like(out)
    _, ours = run_rule(pool, get("winner_takes_all"), x, relevance)
    # explicit: each output's relevance lands on its window's argmax
    expected = torch.zeros_like(x)
    for b in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    window = x[b, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                    k = int(window.argmax())
                    expected[b, c, 2 * i + k // 2, 2 * j + k % 2] = relevance[b, c, i, j]
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_pass_is_identity_and_inplace_relu_is_safe():
    relu = nn.ReLU(inplace=True)
    x = torch.randn(4, 5, dtype=torch.float64)
    keep = x.clone()
    out, r = run_rule(relu, get("pass"), x, torch.ones(4, 5, dtype=torch.float64))
    assert torch.equal(x, keep)
    assert torch.equal(out, keep.clamp(min=0))
    assert torch.equal(r, torch.ones(4, 5, dtype=torch.float64))
