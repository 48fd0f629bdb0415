"""The structural >= 0 hint: same numbers as the full form, and robust where a sign part is empty."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.cnn import EpsilonPlus
from seqlrp.core.function import known_nonnegative

from .reference import explicit_matrix, lrp_matrix


@pytest.mark.parametrize("rule,params", [("zplus", {}), ("alpha_beta", {"alpha": 2.0, "beta": 1.0})])
def test_after_relu_matches_reference(rule, params):
    torch.manual_seed(4)
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    model = nn.Sequential(nn.ReLU(), conv, nn.Flatten(), nn.Linear(4 * 25, 2).double()).eval()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    composite = seqlrp.Composite({nn.Conv2d: (rule, params), nn.Linear: "zero", nn.ReLU: "pass"})
    result = seqlrp.explain(model, x, target=1, composite=composite)
    conv_call = next(c for c in result.calls if c.name == "1")
    assert conv_call.nonnegative == (True,)
    # reference: relevance at the conv output from an explicit LRP-0 on the linear layer, then the rule
    a = x.clamp(min=0)
    h = conv(a)
    lin = model[3]
    out = lin(h.flatten(1))
    r_out = torch.zeros_like(out)
    r_out[:, 1] = out[:, 1]
    Ml = lin.weight
    Mc = explicit_matrix(lambda t: nn.functional.conv2d(t, conv.weight, None, padding=1), (3, 5, 5))
    for i in range(2):
        r_h = lrp_matrix("zero", Ml, h[i].reshape(-1), lin.bias, r_out[i], conn=torch.ones_like(Ml), epsilon=0.0)
        b = conv.bias.repeat_interleave(25)
        r_x = lrp_matrix(rule, Mc, a[i].reshape(-1), b, r_h, epsilon=1e-6, **params)
        torch.testing.assert_close(result.relevance[i].reshape(-1), r_x, rtol=1e-10, atol=1e-10)


def test_known_nonnegative_reads_the_graph_not_values():
    x = torch.rand(3, 4, requires_grad=True)  # values >= 0 but nothing proves it
    assert not known_nonnegative(x)
    assert known_nonnegative(torch.relu(x).view(12)[2:])
    assert not known_nonnegative(torch.relu(x) - 1)


def test_alpha_beta_float32_unit_without_positive_part_stays_clean():
    """A unit whose contributions are all negative must give no float32 garbage (cancellation-free form)."""
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[-1.0, -2.0, -0.5], [1.0, 0.5, 2.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    composite = seqlrp.Composite({nn.Linear: ("zplus", {})})
    r = seqlrp.explain(lin, x, target=0, composite=composite).relevance
    # unit 0 has no positive contribution: z+ relevance is exactly 0 (stabilized denominator, zero numerator)
    assert torch.equal(r, torch.zeros_like(r))


class _SqueezeExcite(nn.Module):
    """ReLU features times a sigmoid gate (RegNetY's squeeze-excitation), then a conv."""

    def __init__(self, gate_after_relu: bool = True):
        super().__init__()
        self.conv1, self.fc, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 1)
        self.gate_after_relu = gate_after_relu

    def forward(self, x):
        h = self.conv1(x)
        h = torch.relu(h) if self.gate_after_relu else torch.tanh(h)
        g = torch.sigmoid(self.fc(h.mean((2, 3), keepdim=True)))
        return self.conv2(h * g).flatten(1)


@pytest.mark.parametrize("after_relu", [True, False])
def test_gated_product_of_nonnegative_factors_is_known_nonnegative(after_relu):
    """ReLU signal x sigmoid gate >= 0: the next conv takes the one-sign z+ path, with the same relevance."""
    torch.manual_seed(5)
    model = _SqueezeExcite(after_relu).double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    composite = EpsilonPlus()  # (the functional mean, sigmoid and product get their rules)
    result = seqlrp.explain(model, x, target=0, composite=composite)
    conv2 = next(c for c in result.calls if c.name == "conv2")
    assert conv2.nonnegative == (after_relu,)
    # the same numbers as the two-sign form (the hint only skips the empty a- half)
    import seqlrp.core.function as function

    real = function.known_nonnegative
    function.known_nonnegative = lambda t, budget=32: False
    try:
        full = seqlrp.explain(model, x, target=0, composite=composite)
    finally:
        function.known_nonnegative = real
    assert next(c for c in full.calls if c.name == "conv2").nonnegative == (False,)
    torch.testing.assert_close(result.relevance, full.relevance, rtol=1e-12, atol=1e-14)
