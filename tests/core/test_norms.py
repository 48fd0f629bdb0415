"""Normalization layers (Ali et al. 2022): ε on the map linearized with the scale held constant, vs an explicit
matrix J = diag(γ/σ)(I - 11ᵀ/N) per sample (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.convnext import LayerNorm2d

from seqlrp.core.registry import get

from .rules.reference import lrp_matrix
from .rules.test_rules_vs_matrix import run_rule


def _layers():
    torch.manual_seed(0)
    yield "layernorm", nn.LayerNorm(6), (3, 6), lambda x: ([x], -1)
    yield "layernorm-2d-shape", nn.LayerNorm((2, 3)), (2, 3), lambda x: ([x.reshape(-1)], None)
    yield "layernorm-no-affine", nn.LayerNorm(5, elementwise_affine=False), (4, 5), lambda x: ([x], -1)
    yield "groupnorm", nn.GroupNorm(2, 4), (4, 3), None
    yield "layernorm2d", LayerNorm2d(3), (3, 2, 2), None
    if hasattr(nn, "RMSNorm"):
        yield "rmsnorm", nn.RMSNorm(5, eps=1e-6), (2, 5), None


def _groups(name: str, layer: nn.Module, x: torch.Tensor) -> list[list[int]]:
    """Flat indices of each normalized group of one sample ``x``."""
    index = torch.arange(x.numel()).reshape(x.shape)
    if name == "groupnorm":
        return [g.reshape(-1).tolist() for g in index.reshape(layer.num_groups, -1)]
    if name == "layernorm2d":
        return [index[:, i, j].tolist() for i in range(x.shape[1]) for j in range(x.shape[2])]
    if name == "layernorm-2d-shape":
        return [index.reshape(-1).tolist()]
    return [row.tolist() for row in index.reshape(-1, x.shape[-1])]


def _per_element(name: str, layer: nn.Module, values: torch.Tensor | None, shape) -> torch.Tensor:
    """γ or β broadcast to one sample's elements (flat)."""
    if values is None:
        return None
    if name in ("groupnorm", "layernorm2d"):
        return values.detach().view(-1, *([1] * (len(shape) - 1))).expand(shape).reshape(-1)
    return values.detach().expand(shape).reshape(-1)


def explicit_jacobian(name, layer, x: torch.Tensor) -> torch.Tensor:
    """J (n x n) of one sample with σ constant, and its bias β (n,), written from the layer's definition."""
    flat, n = x.reshape(-1), x.numel()
    gamma = _per_element(name, layer, getattr(layer, "weight", None), x.shape)
    J = torch.zeros(n, n, dtype=torch.float64)
    for group in _groups(name, layer, x):
        values = flat[group]
        if name == "rmsnorm":
            scale = 1 / torch.sqrt((values**2).mean() + layer.eps)
            J[group, group] = scale
            continue
        sigma = torch.sqrt(values.var(unbiased=False) + layer.eps)
        N = len(group)
        block = (torch.eye(N, dtype=torch.float64) - torch.full((N, N), 1 / N, dtype=torch.float64)) / sigma
        J[torch.tensor(group)[:, None], torch.tensor(group)[None, :]] = block
    if gamma is not None:
        J = gamma[:, None] * J
    return J


@pytest.mark.parametrize("params", [{"epsilon": 0.01}, {"epsilon": 0.05, "bias_factor": 1.0},
                                    {"epsilon": 0.02, "ignore_bias": True}, {}], ids=["eps", "bf1", "nobias", "zero"])
@pytest.mark.parametrize("name,layer,shape,_", list(_layers()), ids=[entry[0] for entry in _layers()])
def test_norm_rule_matches_explicit_matrix(name, layer, shape, _, params):
    layer = layer.double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, *shape, dtype=torch.float64, generator=gen) * 2 + 0.5
    out = layer(x)
    relevance = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    rule = get("epsilon", **params) if params else get("zero")
    ours_out, ours = run_rule(layer, rule, x, relevance)
    assert torch.equal(ours_out, out)
    for i in range(3):
        J = explicit_jacobian(name, layer, x[i])
        beta = _per_element(name, layer, getattr(layer, "bias", None), x[i].shape)
        bias = None if beta is None else beta
        conn = (J != 0).double()
        if name != "rmsnorm":  # (every input of a group feeds every output of it)
            conn = torch.zeros_like(J)
            for group in _groups(name, layer, x[i]):
                conn[torch.tensor(group)[:, None], torch.tensor(group)[None, :]] = 1
        # the layer's output is J x + β: the linearization is exact at x
        torch.testing.assert_close(J @ x[i].reshape(-1) + (0 if bias is None else bias), out[i].reshape(-1))
        expected = lrp_matrix("epsilon", J, x[i].reshape(-1), bias, relevance[i].reshape(-1), conn=conn,
                              **(params or {"epsilon": 0.0}))
        torch.testing.assert_close(ours[i].reshape(-1), expected, rtol=1e-10, atol=1e-12)


def test_norm_with_bias_factor_one_conserves():
    layer = nn.LayerNorm(6).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, 6, dtype=torch.float64)
    relevance = torch.randn(4, 6, dtype=torch.float64)
    _, r = run_rule(layer, get("epsilon", epsilon=0.1, bias_factor=1.0), x, relevance)
    torch.testing.assert_close(r.sum(1), relevance.sum(1), rtol=1e-10, atol=1e-12)


def test_layernorm_keeps_the_forward_kernels_scale():
    """``nn.LayerNorm``'s view keeps the forward kernel's 1/σ (no pass over the input in the backward): the same
    output as the layer, and the same scale γ/σ as recomputed from the input (float64)."""
    from seqlrp.core.views import view_of

    torch.manual_seed(0)
    layer = nn.LayerNorm(6).double()
    nn.init.normal_(layer.weight)
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    view = view_of(layer)
    out, rstd = view.forward_saving(x)
    assert torch.equal(out, layer(x)) and rstd.shape == (3, 4, 1)
    torch.testing.assert_close(view.bind(rstd).scale(x), view.bind(None).scale(x), rtol=1e-13, atol=0)
    assert view.bind(None).rstd is None  # (binding never changes the shared view)
    _, state = view_of(LayerNorm2d(6).double()).forward_saving(x.permute(0, 2, 1)[..., None])
    assert state is None  # (a subclass with its own forward: recomputed)
