"""Views: max pooling routes with the forward's indices; in-place activations never write into saved
tensors; per-sample relevance sums are cached per tensor version."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.core.function import _per_sample_sum
from seqlrp.core.views import ElementwiseView, RouteView


@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 2, "ceil_mode": True},
    {"kernel_size": 2, "dilation": 2}, {"kernel_size": (2, 3), "stride": (1, 2)},
])
def test_max_pool_routes_with_the_forward_indices(kwargs):
    torch.manual_seed(0)
    pool = nn.MaxPool2d(**kwargs)
    view = RouteView(pool)
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    out, indices = view.forward_saving(x)
    assert indices is not None and torch.equal(out, pool(x))
    grad = torch.randn_like(out)
    xg = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(pool(xg), xg, grad)
    torch.testing.assert_close(view.bind(indices).vjp(x, grad), expected, rtol=0, atol=0)


@pytest.mark.parametrize("pool", [nn.MaxPool1d(2), nn.AdaptiveMaxPool2d(3), nn.MaxPool2d(2, return_indices=False)])
def test_other_max_pools_recompute_the_route(pool):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64) if not isinstance(pool, nn.MaxPool1d) else torch.randn(2, 3, 8)
    view = RouteView(pool)
    out, state = view.forward_saving(x)
    grad = torch.randn_like(out)
    xg = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(pool(xg), xg, grad)
    torch.testing.assert_close(view.bind(state).vjp(x, grad), expected, rtol=0, atol=0)


def test_in_place_activation_runs_out_of_place_and_the_module_keeps_its_flag():
    relu = nn.ReLU(inplace=True)
    view = ElementwiseView(relu)
    x = torch.randn(4, 5)
    before = x.clone()
    y = view.forward(x)
    assert torch.equal(x, before) and torch.equal(y, before.clamp(min=0))
    assert relu.inplace is True and view.zero_below_zero
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(inplace=True), nn.Linear(6, 3)).double().eval()
    result = seqlrp.explain(model, torch.randn(2, 5, dtype=torch.float64), 0, seqlrp.EpsilonEverywhere(0.0))
    assert model[1].inplace is True and torch.isfinite(result.relevance).all()


def test_per_sample_sum_is_cached_until_the_tensor_changes():
    t = torch.arange(12.0).reshape(2, 6)
    first = _per_sample_sum(t)
    assert _per_sample_sum(t) is first
    t.mul_(2)  # an in-place change bumps the version: the sum is recomputed
    torch.testing.assert_close(_per_sample_sum(t), 2 * first)


@pytest.mark.parametrize("layer, shape", [
    (nn.Conv2d(3, 5, 3, stride=2, padding=1), (2, 3, 9, 8)),  # needs output padding
    (nn.Conv2d(3, 5, (3, 2), stride=(2, 3), dilation=(1, 2)), (2, 3, 11, 12)),
    (nn.Conv1d(2, 4, 5, stride=3, padding=2), (3, 2, 17)),
    (nn.Conv3d(2, 3, 3, stride=2), (1, 2, 7, 8, 9)),
    (nn.Conv2d(4, 6, 3, groups=2), (2, 4, 6, 6)),  # groups: one transpose per weight
    (nn.Linear(4, 3), (2, 5, 4)),
])
def test_stacked_transposes_equal_one_transpose_per_weight(layer, shape):
    from seqlrp.core.views import view_of

    torch.manual_seed(2)
    layer = layer.double()
    view = view_of(layer)
    x = torch.randn(shape, dtype=torch.float64)
    grad = torch.randn_like(layer(x))
    weights = (layer.weight, layer.weight.clamp(min=0), torch.randn_like(layer.weight))
    for stacked, single in zip(view.vjp_stack(grad, weights, x), [view.vjp(grad, w, x) for w in weights], strict=True):
        assert stacked.shape == x.shape
        torch.testing.assert_close(stacked, single, rtol=1e-12, atol=1e-12)
