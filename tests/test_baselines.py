"""Baselines share explain()'s signature and are checked against autograd / hand computations."""

from __future__ import annotations

import torch
from torch import nn

import seqlrp


def model():
    torch.manual_seed(9)
    return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()


def test_gradient_and_gradient_x_input():
    m = model()
    x = torch.randn(4, 5, dtype=torch.float64)
    grad = seqlrp.baselines.gradient(m, x, target=1)
    xg = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(m(xg)[:, 1].sum(), xg)
    torch.testing.assert_close(grad.relevance, expected, rtol=0, atol=0)
    gxi = seqlrp.baselines.gradient_x_input(m, x, target=1)
    torch.testing.assert_close(gxi.relevance, expected * x, rtol=0, atol=0)


def test_guided_backprop_clamps_negative_gradients_at_relus():
    m = model()
    x = torch.randn(4, 5, dtype=torch.float64)
    guided = seqlrp.baselines.guided_backprop(m, x, target=0)
    hidden = m[0](x)
    g_hidden = m[2].weight[0].expand(4, 6)  # d f_0 / d relu-output
    g_pre = g_hidden.clamp(min=0) * (hidden > 0)
    torch.testing.assert_close(guided.relevance, g_pre @ m[0].weight, rtol=1e-12, atol=1e-12)
    assert "guided_relu" in guided.coverage.rules["1"]


def test_guided_backprop_on_a_model_with_batchnorm():
    torch.manual_seed(10)
    m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    x = torch.randn(2, 1, 6, 6)
    guided = seqlrp.baselines.guided_backprop(m, x, target=1)
    assert guided.relevance.shape == x.shape and torch.isfinite(guided.relevance).all()
    assert "guided_relu" in guided.coverage.rules["2"]


def test_guided_backprop_leaves_recurrent_layers_to_the_gradient():
    torch.manual_seed(11)
    lstm = nn.LSTM(3, 4, batch_first=True).double().eval()

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.relu, self.out = lstm, nn.ReLU(), nn.Linear(4, 2).double()

        def forward(self, x):
            return self.out(self.relu(self.lstm(x)[1][0][0]))

    model = Head().eval()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    guided = seqlrp.baselines.guided_backprop(model, x, target=0)
    assert "lstm" not in guided.coverage.rules
    xg = x.clone().requires_grad_(True)
    h = lstm(xg)[1][0][0]
    g_h = model.out.weight[0].expand(2, 4).clamp(min=0) * (h > 0)  # guided at the ReLU
    (expected,) = torch.autograd.grad(h, xg, g_h)
    torch.testing.assert_close(guided.relevance, expected, rtol=1e-12, atol=1e-12)
