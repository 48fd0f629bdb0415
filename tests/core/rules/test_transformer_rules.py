"""AttnLRP's rules (softmax, uniform, identity) vs slow float64 references: explicit Jacobians and summand loops,
checked both on the rule alone and through ``explain`` (the functional mode routes the ops to the rules)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.core.bilinear import BilinearView, SignalProduct, SoftmaxView
from seqlrp.core.ops import Contraction, Product, Sum
from seqlrp.core.registry import get

TOL = 1e-12


def _sign(t: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1, in the dtype of ``t``."""
    return torch.where(t >= 0, 1.0, -1.0).to(t.dtype)


def _softmax_reference(x: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """x ⊙ Jᵀ (R / s) with the softmax's explicit Jacobian, one row at a time (the Taylor expansion at x)."""
    out = torch.zeros_like(x)
    for index in itertools.product(*(range(n) for n in x.shape[:-1])):
        row = x[index]
        jacobian = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, -1), row)  # J[i, j] = ds_i/dx_j
        s = torch.softmax(row, -1)
        out[index] = row * (jacobian.T @ (relevance[index] / s))
    return out


def test_softmax_rule_is_the_taylor_expansion_at_x():
    torch.manual_seed(0)
    x, r = torch.randn(2, 3, 6, dtype=torch.float64), torch.randn(2, 3, 6, dtype=torch.float64)
    s = torch.softmax(x, -1)
    (got,) = get("softmax").relevance(SoftmaxView(-1), (x,), s, r)
    assert torch.allclose(got, _softmax_reference(x, r), atol=TOL, rtol=0)


def test_softmax_rule_masked_inputs_get_zero_and_no_nan():
    x = torch.tensor([[0.5, float("-inf"), -1.0]], dtype=torch.float64)
    s = torch.softmax(x, -1)
    (got,) = get("softmax").relevance(SoftmaxView(-1), (x,), s, torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64))
    assert torch.isfinite(got).all() and got[0, 1] == 0


def _uniform_matmul_reference(a, b, r, eps):
    """Loop over the summands z_ijp = a_ji b_ip of y_jp: ε over the summands, then each summand's relevance
    split evenly between its two factors (AttnLRP, Prop. 3.3)."""
    y = a @ b
    ra, rb = torch.zeros_like(a), torch.zeros_like(b)
    for j, i, p in itertools.product(range(a.shape[0]), range(a.shape[1]), range(b.shape[1])):
        stab = y[j, p] + eps * (1.0 if y[j, p] >= 0 else -1.0)
        share = a[j, i] * b[i, p] / stab * r[j, p]
        ra[j, i] += share / 2
        rb[i, p] += share / 2
    return ra, rb


@pytest.mark.parametrize("eps", [0.0, 0.05])
def test_uniform_rule_on_matmul_vs_summand_loop(eps):
    torch.manual_seed(1)
    a, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    r = torch.randn(3, 5, dtype=torch.float64)
    got = get("uniform", epsilon=eps).relevance(BilinearView(torch.matmul), (a, b), a @ b, r)
    want = _uniform_matmul_reference(a, b, r, eps)
    assert all(torch.allclose(g, w, atol=TOL, rtol=0) for g, w in zip(got, want, strict=True))


def test_uniform_rule_batched_matmul_and_einsum_agree_with_the_loop():
    torch.manual_seed(2)
    a, b = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    r = torch.randn(2, 3, 3, dtype=torch.float64)
    rule = get("uniform", epsilon=0.01)
    matmul = rule.relevance(BilinearView(torch.matmul), (a, b), a @ b, r)
    einsum = rule.relevance(BilinearView(lambda u, v: torch.einsum("bij,bjk->bik", u, v)), (a, b), a @ b, r)
    for n in range(2):
        want = _uniform_matmul_reference(a[n], b[n], r[n], 0.01)
        for got in (matmul, einsum):
            assert torch.allclose(got[0][n], want[0], atol=TOL, rtol=0)
            assert torch.allclose(got[1][n], want[1], atol=TOL, rtol=0)


def test_uniform_rule_elementwise_with_broadcast():
    torch.manual_seed(3)
    a, b = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(1, 3, 4, dtype=torch.float64)
    y, r = a * b, torch.randn(2, 3, 4, dtype=torch.float64)
    ra, rb = get("uniform", epsilon=0.1).relevance(BilinearView(BilinearView.MULTIPLY), (a, b), y, r)
    half = 0.5 * r * y / (y + 0.1 * _sign(y))
    assert torch.allclose(ra, half, atol=TOL, rtol=0)
    assert torch.allclose(rb, half.sum(0, keepdim=True), atol=TOL, rtol=0)


# ------------------------------------------------------------------------------------ through explain()
class _Attention(nn.Module):
    """One head of self-attention written with plain torch ops, a gated MLP and a normalization."""

    def __init__(self, d=4, norm: type = nn.RMSNorm):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.up, self.gate = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.norm, self.head = norm(d), nn.Linear(d, 2, bias=False)

    def forward(self, x):
        scores = self.q(x) @ self.k(x).transpose(-2, -1)
        weights = torch.softmax(scores, -1)
        h = x + weights @ self.v(x)
        h = h + self.up(h) * nn.functional.silu(self.gate(h))
        return self.head(self.norm(h).mean(1))


def _explained(model, x, composite):
    return seqlrp.explain(model, x, target=0, composite=composite, record="full")


def test_attnlrp_through_explain_matches_a_hand_written_backward():
    """The same model's relevance computed by hand, op by op, with the reference formulas above."""
    torch.manual_seed(4)
    model = _Attention().double().eval()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    eps = 1e-9
    result = _explained(model, x, seqlrp.transformers.AttnLRP(epsilon=eps))
    assert not result.coverage.unruled

    def lin(layer, inp, r):  # ε rule, no bias: x ⊙ Wᵀ (R / stab(z))
        z = layer(inp)
        return inp * ((r / (z + eps * _sign(z))) @ layer.weight)

    def add(a, b, r):
        z = a + b
        s = r / (z + eps * _sign(z))
        return a * s, b * s

    with torch.no_grad():
        m, x0 = model, x[0]
        q, k, v = m.q(x0), m.k(x0), m.v(x0)
        scores = q @ k.T
        w = torch.softmax(scores, -1)
        h1 = x0 + w @ v
        u, g = m.up(h1), m.gate(h1)
        act = nn.functional.silu(g)
        h2 = h1 + u * act
        n = m.norm(h2)
        pooled = n.mean(0)
        r_pooled = torch.zeros(2, dtype=torch.float64)
        r_pooled[0] = m.head(pooled)[0]
        r_pooled = lin(m.head, pooled, r_pooled)
        r_n = n * (r_pooled / (pooled + eps * _sign(pooled)) / 3)  # mean: ε
        r_h2 = r_n  # RMSNorm: identity
        r_h1, r_prod = add(h1, u * act, r_h2)
        half = 0.5 * r_prod * (u * act) / (u * act + eps * _sign(u * act))
        r_h1 = r_h1 + lin(m.up, h1, half) + lin(m.gate, h1, half)  # SiLU: identity
        r_x, r_att = add(x0, w @ v, r_h1)
        r_w, r_v = _uniform_matmul_reference(w, v, r_att, eps)
        r_scores = _softmax_reference(scores[None], r_w[None])[0]
        r_q, r_kt = _uniform_matmul_reference(q, k.T, r_scores, eps)
        r_x = r_x + lin(m.q, x0, r_q) + lin(m.k, x0, r_kt.T) + lin(m.v, x0, r_v)
    assert torch.allclose(result.relevance[0], r_x, atol=1e-10, rtol=0)


@pytest.mark.parametrize("preset", ["AttnLRP", "CPLRP"])
def test_per_layer_conservation_with_epsilon_to_zero(preset):
    torch.manual_seed(5)
    model = _Attention(norm=nn.LayerNorm).double().eval()
    nn.init.zeros_(model.norm.bias)
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    result = _explained(model, x, getattr(seqlrp.transformers, preset)(epsilon=1e-14))
    assert not result.coverage.unruled
    checked = 0
    for row in result.conservation():
        if row.name == "torch.softmax":  # (the Taylor rule absorbs the softmax's implicit bias: not conservative)
            continue
        assert bool(((row.relevance_in - row.relevance_out).abs() <= 1e-9 * row.magnitude).all()), row.name
        checked += 1
    assert checked >= 8


def test_presets_name_their_rules_and_the_preset_in_the_coverage():
    torch.manual_seed(6)
    model = _Attention().double().eval()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    attn = _explained(model, x, seqlrp.transformers.AttnLRP()).coverage.rules
    cp = _explained(model, x, seqlrp.transformers.CPLRP()).coverage.rules
    assert attn["<composite>"] == "AttnLRP(epsilon=1e-06)" and cp["<composite>"] == "CPLRP(epsilon=1e-06)"
    assert "uniform" in attn["torch.matmul (gate: softmax)"] and "softmax" in attn["torch.softmax"]
    assert "epsilon" in cp["torch.matmul (gate: softmax)"] and "torch.softmax" not in cp
    assert "identity" in attn["norm"] and "uniform" in attn["torch.mul (signals)"]


def test_module_twins_are_the_composite_keys():
    composite = seqlrp.transformers.AttnLRP()
    assert composite.by_type(SignalProduct()).name == "uniform"
    assert composite.by_type(Contraction()).name == "uniform" and composite.by_type(Product()).name == "uniform"
    assert composite.by_type(nn.Softmax()).name == "softmax" and composite.by_type(Sum()).name == "epsilon"
    assert seqlrp.transformers.CPLRP().by_type(nn.Softmax()) is None
