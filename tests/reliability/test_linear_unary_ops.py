"""Linear unary ops (``-x``, ``x * c``, ``x / c``) only rescale: relevance passes unchanged (issue 25, item 6).

For ``y = c x`` every rule of the ε / γ / zB family gives :math:`R_x = \\frac{c x}{c x} R_y = R_y`; the test
compares with the same function written with ``c`` folded into the next layer's weight (float64, 1e-12).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import seqlrp

SCALE = torch.tensor([2.0, -0.5, 3.0, 1.5, -1.0, 0.25], dtype=torch.float64)

#: name -> (the op on the hidden layer, the factor it multiplies by)
OPS = {
    "neg": (lambda h: -h, -1.0),
    "torch.neg": (torch.neg, -1.0),
    "Tensor.neg": (lambda h: h.neg(), -1.0),
    "mul": (lambda h: h * 2.0, 2.0),
    "rmul": (lambda h: -3.0 * h, -3.0),
    "div": (lambda h: h / 4.0, 0.25),
    "torch.div": (lambda h: torch.div(h, -4.0), -0.25),
    "mul tensor": (lambda h: h * SCALE, SCALE),
    "div tensor": (lambda h: h / SCALE, 1 / SCALE),
    "neg_": (lambda h: h.clone().neg_(), -1.0),
    "*=": (lambda h: _imul(h), 2.0),
    "/=": (lambda h: _idiv(h), 0.5),
}


def _imul(h):
    h = h.clone()
    h *= 2.0
    return h


def _idiv(h):
    h = h.clone()
    h /= 2.0
    return h


class Scaled(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.fc1, self.fc2, self.op = nn.Linear(4, 6), nn.Linear(6, 3), op

    def forward(self, x):
        return self.fc2(torch.relu(self.op(self.fc1(x))))


class Folded(nn.Module):
    """The same function: ``relu(c h) = relu(c h)`` is computed by scaling fc1 instead (c folded)."""

    def __init__(self, scaled, factor):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6, dtype=torch.float64), scaled.fc2
        factor = torch.as_tensor(factor, dtype=torch.float64).expand(6)
        with torch.no_grad():
            self.fc1.weight.copy_(scaled.fc1.weight * factor[:, None])
            self.fc1.bias.copy_(scaled.fc1.bias * factor)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("composite", [lambda: seqlrp.ZeroEverywhere(), lambda: {nn.Linear: "zero", nn.ReLU: "pass"}],
                         ids=["zero", "no pool rule"])  # (ε = 0: fc1's ε would see c z instead of z)
def test_linear_unary_op_passes_relevance_unchanged(name, composite):
    op, factor = OPS[name]
    torch.manual_seed(0)
    model = Scaled(op).double().eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        result = seqlrp.explain(model, x, target=1, composite=composite())
    assert result.coverage.complete, result.coverage
    # fc1 gets the identity-routed relevance; with the scale folded into fc1 (LRP-0: a_j c w_jk / c z_k is
    # a_j w_jk / z_k) the explanation is the same
    folded = seqlrp.explain(Folded(model, factor).double().eval(), x, target=1, composite=composite())
    torch.testing.assert_close(result.output, folded.output, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.relevance, folded.relevance, rtol=1e-10, atol=1e-12)


def test_scaling_rows_conserve_exactly():
    torch.manual_seed(1)
    model = Scaled(lambda h: -h / 3.0).double().eval()
    result = seqlrp.explain(model, torch.randn(2, 4, dtype=torch.float64), target=0)
    rows = [row for row in result.conservation() if row.name.startswith(("torch.neg", "torch.div"))]
    assert len(rows) == 2
    for row in rows:
        torch.testing.assert_close(row.relevance_in, row.relevance_out, rtol=0, atol=0)


def test_adding_a_constant_is_a_bias_not_a_scaling():
    """``x + c`` is affine, not linear: the ε rule treats ``c`` as a bias (absorbed with bias_factor 0)."""
    torch.manual_seed(2)
    model = Scaled(lambda h: h + 0.5).double().eval()
    result = seqlrp.explain(model, torch.randn(2, 4, dtype=torch.float64), target=0)
    assert any(key.startswith("torch.add (bias)") for key in result.coverage.rules)
