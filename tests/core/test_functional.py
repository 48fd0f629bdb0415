"""Functional ops get the rules of their module twins: sums, gates, contractions, attention, functional
layers, pooling and activations (formulas written out, or the module twin as the reference; float64)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import SqueezeExcitation

import seqlrp
from seqlrp.core.function import LayerCall, LRPFunction
from seqlrp.core.functional import AttentionView, gate_of
from seqlrp.core.ops import Product, Sum, SumView
from seqlrp.core.registry import get

from .helpers import untouched

EPS = 0.01


def stab(z, eps=EPS):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).double()


class Lambda(nn.Module):
    """A model whose forward is ``fn(self, x)`` (the layers it uses are its children)."""

    def __init__(self, fn, **children):
        super().__init__()
        self.fn = fn
        for name, child in children.items():
            self.add_module(name, child)

    def forward(self, x):
        return self.fn(self, x)


def twins(fn_functional, fn_module, **children):
    torch.manual_seed(0)
    a = Lambda(fn_functional, **children).double().eval()
    b = Lambda(fn_module, **{k: v for k, v in a.named_children()}).double().eval()
    return a, b


def assert_same_relevance(a, b, x, composite=None, **kw):
    composite = composite or (lambda: seqlrp.EpsilonEverywhere(EPS))
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        with untouched(a):
            result = seqlrp.explain(a, x, composite=composite(), **kw)
    expected = seqlrp.explain(b, x, composite=composite(), **kw)
    torch.testing.assert_close(result.output, expected.output, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.relevance, expected.relevance, rtol=1e-10, atol=1e-12)
    return result


def op_relevance(view, rule, inputs, relevance):
    """One LRPFunction in isolation: (output, relevance of each input)."""
    inputs = [t.clone().requires_grad_(True) for t in inputs]
    out = LRPFunction.apply(LayerCall("op", "op", rule, view), *inputs)
    grads = torch.autograd.grad(out, inputs, relevance, allow_unused=True)
    return out, grads


# ------------------------------------------------------------------------------------------- sums
def test_signed_sum_with_broadcast_and_bias():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=gen)
    b = torch.randn(2, 3, 1, 1, dtype=torch.float64, generator=gen)
    relevance = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=gen)
    out, (ra, rb) = op_relevance(SumView(Sum(), signs=(1, -1)), get("epsilon", epsilon=EPS), [a, b], relevance)
    torch.testing.assert_close(out, a - b)
    s = relevance / stab(a - b)
    torch.testing.assert_close(ra, a * s, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(rb, (-b * s).sum((2, 3), keepdim=True), rtol=1e-12, atol=1e-14)
    # a constant summand is a bias: it receives nothing, the relevance of x is x R / stab(x + c)
    out, (ra, rc) = op_relevance(SumView(Sum(), constants=(False, True)), get("epsilon", epsilon=EPS), [a, b],
                                 relevance)
    torch.testing.assert_close(ra, a * relevance / stab(a + b), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("form", ["a - b", "c - x", "x + bias", "a += b (alias read)", "a -= b"])
def test_functional_sums_equal_their_explicit_twin(form):
    functional = {
        "a - b": lambda m, x: m.head(torch.relu(m.fc(x)) - m.fc2(x)),
        "c - x": lambda m, x: m.head(1.5 - torch.relu(m.fc(x))),
        "x + bias": lambda m, x: m.head(torch.relu(m.fc(x)) + m.bias),
        "a += b (alias read)": lambda m, x: _iadd_alias(m, x),
        "a -= b": lambda m, x: _isub(m, x),
    }[form]
    explicit = {
        "a - b": lambda m, x: m.head(m.signed(torch.relu(m.fc(x)), m.fc2(x))),
        "c - x": lambda m, x: m.head(m.rsub(torch.relu(m.fc(x)))),
        "x + bias": lambda m, x: m.head(m.biased(torch.relu(m.fc(x)))),
        "a += b (alias read)": lambda m, x: m.head(m.sum(torch.relu(m.fc(x)), m.fc2(x))),
        "a -= b": lambda m, x: m.head(m.signed(torch.relu(m.fc(x)), m.fc2(x))),
    }[form]
    a, b = twins(functional, explicit, fc=nn.Linear(4, 5), fc2=nn.Linear(4, 5), head=nn.Linear(5, 3))
    a.register_buffer("bias", torch.randn(5, dtype=torch.float64))
    b.register_buffer("bias", a.bias)
    b.sum, b.signed = Sum(), _Signed(1, -1)
    b.rsub, b.biased = _Constant(1.5, sign=-1), _Constant(a.bias, sign=1)
    assert_same_relevance(a, b, torch.randn(3, 4, dtype=torch.float64), target=1)


def _iadd_alias(m, x):
    y = torch.relu(m.fc(x))
    alias = y
    y += m.fc2(x)  # the alias must see the sum: in-place semantics kept
    return m.head(alias)


def _isub(m, x):
    y = torch.relu(m.fc(x))
    y -= m.fc2(x)
    return m.head(y)


class _Signed(nn.Module):
    def __init__(self, *signs):
        super().__init__()
        self.signs = signs

    def forward(self, a, b):
        call = LayerCall("signed", "Sum", get("epsilon", epsilon=EPS), SumView(Sum(), signs=self.signs))
        return LRPFunction.apply(call, a, b)


class _Constant(nn.Module):
    def __init__(self, c, sign):
        super().__init__()
        self.c, self.sign = c, sign

    def forward(self, x):
        c = torch.as_tensor(self.c, dtype=x.dtype)
        view = SumView(Sum(), signs=(1, self.sign) if self.sign > 0 else (-1, 1), constants=(False, True))
        return LRPFunction.apply(LayerCall("const", "Sum", get("epsilon", epsilon=EPS), view), x, c)


# ------------------------------------------------------------------------------------------ gates
@pytest.mark.parametrize("gate", ["sigmoid", "hardsigmoid", "softmax", "nn.Sigmoid"])
def test_gated_product_equals_the_product_module_and_names_the_gate(gate):
    nonlinearity = {"sigmoid": torch.sigmoid, "hardsigmoid": F.hardsigmoid,
                    "softmax": lambda t: torch.softmax(t, 1), "nn.Sigmoid": nn.Sigmoid()}[gate]

    def functional(m, x):
        h = torch.relu(m.conv(x))
        g = nonlinearity(m.fc(h.mean((2, 3))))[:, :, None, None]  # broadcast over positions
        return m.head(h * g if gate != "softmax" else g * h)

    def explicit(m, x):
        h = torch.relu(m.conv(x))
        g = nonlinearity(m.fc(h.mean((2, 3))))[:, :, None, None]
        return m.head(m.product(g.expand_as(h), h))

    a, b = twins(functional, explicit, conv=nn.Conv2d(2, 3, 3, padding=1), fc=nn.Linear(3, 3),
                 head=nn.Sequential(nn.Flatten(), nn.Linear(3 * 16, 2)))
    b.product = Product()
    result = assert_same_relevance(a, b, torch.randn(2, 2, 4, 4, dtype=torch.float64))
    name = "sigmoid" if gate == "nn.Sigmoid" else gate
    assert result.coverage.rules[f"torch.mul (gate: {name})"].endswith("signal_takes_all()")


def test_squeeze_excitation_gives_its_gate_nothing_and_is_covered():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), SqueezeExcitation(8, 4), nn.Flatten(),
                          nn.Linear(8 * 16, 3)).double().eval()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        result = seqlrp.explain(model, x, composite=seqlrp.EpsilonEverywhere(bias_factor=1.0), record="full")
    assert "torch.mul (gate: sigmoid)" in result.coverage.rules
    assert result.coverage.complete
    fc = [row for row in result.conservation() if row.name.startswith("2.fc")]
    assert fc == [], "the excitation branch (a gate) received relevance"
    logit = result.output.gather(1, result.target[:, None])[:, 0]
    torch.testing.assert_close(result.relevance_sum, logit, rtol=1e-9, atol=1e-9)  # conserved through the gate


def test_gate_found_through_views_and_not_for_signals():
    x = torch.randn(2, 3, requires_grad=True)
    assert gate_of(torch.sigmoid(x)[:, :, None].expand(2, 3, 4).permute(0, 2, 1)) == "sigmoid"
    assert gate_of(torch.softmax(x, 1).masked_fill(torch.zeros(2, 3, dtype=torch.bool), 0.0)) == "softmax"
    assert gate_of(torch.sigmoid(x) * 2) is None and gate_of(x) is None and gate_of(torch.tanh(x)) is None


# ------------------------------------------------------------------------------------ contractions
@pytest.mark.parametrize("form", ["matmul", "bmm", "einsum", "einsum signal first", "mul + sum"])
def test_attention_pooling_gives_each_summand_its_share(form):
    def pool(m, h):
        a = torch.softmax(m.score(h)[..., 0], 1)  # (B, T)
        if form == "matmul":
            return (a[:, None, :] @ h)[:, 0]
        if form == "bmm":
            return torch.bmm(a[:, None, :], h)[:, 0]
        if form == "einsum":
            return torch.einsum("bt,btd->bd", a, h)
        if form == "einsum signal first":
            return torch.einsum("btd,bt->bd", h, a)
        return (a[..., None] * h).sum(1)

    torch.manual_seed(0)
    model = Lambda(lambda m, x: m.head(pool(m, torch.tanh(m.proj(x)))), proj=nn.Linear(3, 4),
                   score=nn.Linear(4, 1), head=nn.Linear(4, 2)).double().eval()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        result = seqlrp.explain(model, x, target=0, composite=seqlrp.ZeroEverywhere())
    # reference: LRP-0 by hand. head: R_c = c_d W_0d ; pooling: R_{t,d} = a_t h_td R_d / c_d ; tanh passes;
    # proj: R_x = x * W^T (R_u / u) with u = proj(x)
    with torch.no_grad():
        u = model.proj(x)
        h = torch.tanh(u)
        a = torch.softmax(model.score(h)[..., 0], 1)
        c = (a[..., None] * h).sum(1)
        r_c = c * model.head.weight[0]
        r_h = a[..., None] * h * (r_c / c)[:, None, :]
        expected = x * ((r_h / u) @ model.proj.weight)
    torch.testing.assert_close(result.relevance, expected, rtol=1e-10, atol=1e-12)
    assert result.coverage.complete
    assert not [row for row in result.conservation() if row.name == "score"]  # the gate branch got nothing


def test_scaled_dot_product_attention_is_a_contraction_over_v():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=gen) for _ in range(3))
    mask = torch.rand(5, 5, generator=gen) > 0.3
    mask.fill_diagonal_(True)
    relevance = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=gen)
    for options in ({}, {"attn_mask": mask}, {"is_causal": True}, {"scale": 0.7}):
        view = AttentionView({"attn_mask": None, "is_causal": False, "scale": None} | options)
        out, (rq, rk, rv) = op_relevance(view, get("epsilon", epsilon=EPS), [q, k, v], relevance)
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, **options))
        scores = q @ k.transpose(-2, -1) * options.get("scale", 0.5)
        if "attn_mask" in options:
            scores = scores.masked_fill(~mask, float("-inf"))
        if options.get("is_causal"):
            scores = scores.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
        weights = scores.softmax(-1)
        expected = v * (weights.transpose(-2, -1) @ (relevance / stab(weights @ v)))
        torch.testing.assert_close(rv, expected, rtol=1e-10, atol=1e-12)
        assert rq is None and rk is None


# ------------------------------------------------------------------------- functional layers, pools
@pytest.mark.parametrize("form", ["F.linear", "x @ W.T", "F.conv2d", "F.adaptive_avg_pool2d", "F.avg_pool2d",
                                  "F.silu", "F.gelu", "F.relu(inplace=True) alias"])
def test_functional_layers_equal_their_modules(form):
    conv, head = nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.Linear(3 * 4, 2)
    lin = nn.Linear(2 * 8 * 8, 3 * 4)
    functional = {
        "F.linear": lambda m, x: m.head(torch.relu(F.linear(x.flatten(1), m.lin.weight, m.lin.bias))),
        "x @ W.T": lambda m, x: m.head(torch.relu(x.flatten(1) @ m.lin.weight.T)),
        "F.conv2d": lambda m, x: m.head(F.adaptive_avg_pool2d(torch.relu(F.conv2d(x, m.conv.weight, m.conv.bias,
                                                                                    2, 1)), 2).flatten(1)),
        "F.adaptive_avg_pool2d": lambda m, x: m.head(F.adaptive_avg_pool2d(torch.relu(m.conv(x)), 2).flatten(1)),
        "F.avg_pool2d": lambda m, x: m.head(F.avg_pool2d(torch.relu(m.conv(x)), 2).flatten(1)),
        "F.silu": lambda m, x: m.head(F.silu(m.lin(x.flatten(1)))),
        "F.gelu": lambda m, x: m.head(F.gelu(m.lin(x.flatten(1)))),
        "F.relu(inplace=True) alias": lambda m, x: _relu_alias(m, x),
    }[form]
    module = {
        "F.linear": lambda m, x: m.head(torch.relu(m.lin(x.flatten(1)))),
        "x @ W.T": lambda m, x: m.head(torch.relu(m.nobias(x.flatten(1)))),
        "F.conv2d": lambda m, x: m.head(m.pool(torch.relu(m.conv(x))).flatten(1)),
        "F.adaptive_avg_pool2d": lambda m, x: m.head(m.pool(torch.relu(m.conv(x))).flatten(1)),
        "F.avg_pool2d": lambda m, x: m.head(m.avg(torch.relu(m.conv(x))).flatten(1)),
        "F.silu": lambda m, x: m.head(m.silu(m.lin(x.flatten(1)))),
        "F.gelu": lambda m, x: m.head(m.gelu(m.lin(x.flatten(1)))),
        "F.relu(inplace=True) alias": lambda m, x: m.head(torch.relu(m.lin(x.flatten(1)))),
    }[form]
    a, b = twins(functional, module, conv=conv, head=head, lin=lin)
    nobias = nn.Linear(2 * 8 * 8, 3 * 4, bias=False).double()
    nobias.weight = a.lin.weight
    b.nobias, b.pool, b.avg = nobias, nn.AdaptiveAvgPool2d(2), nn.AvgPool2d(2)
    b.silu, b.gelu = nn.SiLU(), nn.GELU()
    result = assert_same_relevance(a, b, torch.randn(2, 2, 8, 8, dtype=torch.float64))
    assert any(key.startswith(("F.", "torch.")) for key in result.coverage.rules)


def _relu_alias(m, x):
    y = m.lin(x.flatten(1))
    F.relu(y, inplace=True)  # the result is read through y
    return m.head(y)


@pytest.mark.parametrize("signs,constants", [((1, 1), (False, True)), ((1, -1), (False, True)),
                                             ((1, -1), (True, False)), ((1, 1), (False, False))])
def test_sums_with_bias_factor_one_conserve_also_with_constant_summands(signs, constants):
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(3, 4, dtype=torch.float64, generator=gen), torch.randn(4, dtype=torch.float64, generator=gen)
    relevance = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    view = SumView(Sum(), signs=signs, constants=constants)
    _, grads = op_relevance(view, get("epsilon", epsilon=0.1, bias_factor=1.0), [a, b], relevance)
    total = sum(g.sum() for g, constant in zip(grads, constants, strict=True) if not constant)
    torch.testing.assert_close(total, relevance.sum(), rtol=1e-12, atol=1e-12)
