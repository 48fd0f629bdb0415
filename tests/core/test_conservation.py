"""Conservation and the LRP-0 == gradient x input identity on ReLU networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seqlrp


def relu_mlp():
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)).double().eval()


def relu_cnn():
    torch.manual_seed(6)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 10), nn.ReLU(), nn.Linear(10, 5),
    ).double().eval()


@pytest.mark.parametrize("make,shape", [(relu_mlp, (4, 6)), (relu_cnn, (3, 3, 16, 16))])
def test_lrp0_equals_gradient_x_input(make, shape):
    model = make()
    x = torch.randn(*shape, dtype=torch.float64)
    lrp = seqlrp.explain(model, x, composite=seqlrp.ZeroEverywhere())
    gxi = seqlrp.baselines.gradient_x_input(model, x, target=lrp.target)  # seed "one": d f_c / dx
    torch.testing.assert_close(lrp.relevance, gxi.relevance, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("make,shape", [(relu_mlp, (4, 6)), (relu_cnn, (3, 3, 16, 16))])
def test_biases_ignored_eps_zero_conserves_per_layer(make, shape):
    model = make()
    x = torch.randn(*shape, dtype=torch.float64)
    composite = seqlrp.Composite({seqlrp.groups.WEIGHTED: ("zero", {"ignore_bias": True}),
                                  seqlrp.groups.AVG_POOLS: "zero",
                                  seqlrp.groups.MAX_POOLS: "winner_takes_all",
                                  seqlrp.groups.ACTIVATIONS: "pass"})
    result = seqlrp.explain(model, x, composite=composite)
    rows = result.conservation()
    assert len(rows) == len([m for m in model if not isinstance(m, nn.Flatten)])
    for row in rows:
        torch.testing.assert_close(row.relevance_in, row.relevance_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(result.relevance_sum, result.seed.sum(1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("make,shape", [(relu_mlp, (4, 6)), (relu_cnn, (3, 3, 16, 16))])
@pytest.mark.parametrize("epsilon", [1e-3, 0.5])
def test_epsilon_with_bias_factor_one_conserves_output(make, shape, epsilon):
    model = make()
    x = torch.randn(*shape, dtype=torch.float64)
    result = seqlrp.explain(model, x, composite=seqlrp.EpsilonEverywhere(epsilon=epsilon, bias_factor=1.0))
    for row in result.conservation():
        torch.testing.assert_close(row.relevance_in, row.relevance_out, rtol=1e-10, atol=1e-10)
    target_logit = result.output.gather(1, result.target[:, None])[:, 0]
    torch.testing.assert_close(result.relevance_sum, target_logit, rtol=1e-10, atol=1e-10)


def test_epsilon_without_bias_factor_absorbs():
    model = relu_mlp()
    x = torch.randn(4, 6, dtype=torch.float64)
    result = seqlrp.explain(model, x, composite=seqlrp.EpsilonEverywhere(epsilon=0.5))
    target_logit = result.output.gather(1, result.target[:, None])[:, 0]
    assert not torch.allclose(result.relevance_sum, target_logit)
