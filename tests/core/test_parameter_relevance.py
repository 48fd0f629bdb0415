"""Relevance that reaches parameters is reported per parameter and sample (issue 25 item 4)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import seqlrp

from .helpers import assert_unchanged, snapshot

vision_transformer = pytest.importorskip("torchvision.models").VisionTransformer
CONSERVING = seqlrp.EpsilonEverywhere(epsilon=1e-9, bias_factor=1.0)


def tiny_vit():
    torch.manual_seed(0)
    model = vision_transformer(image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16,
                               num_classes=3).double().eval()
    with torch.no_grad():  # (torchvision initializes the class token and the head to zero)
        model.class_token.normal_(0, 1.0)
        model.encoder.pos_embedding.normal_(0, 0.5)
        model.heads.head.weight.normal_(0, 1.0)
    return model


def explain(model, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seqlrp.CoverageWarning)
        return seqlrp.explain(model, x, composite=CONSERVING, **kw)


def test_vit_class_token_relevance_closes_the_balance():
    model = tiny_vit()
    before = snapshot(model)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    result = explain(model, x)
    assert_unchanged(model, before)
    logit = result.seed.sum(1)
    token = result.parameter_relevance["class_token"]
    assert token.shape == (3,)
    # the input alone is far off the logit: the class token took its share
    assert float((result.relevance_sum - logit).abs().max()) > 0.5
    assert torch.allclose(result.relevance_sum + token, logit, rtol=0, atol=1e-6)
    assert torch.allclose(result.relevance_sum + result.parameter_relevance_sum, logit, rtol=0, atol=1e-6)
    table = result.conservation_table()
    assert "parameter class_token" in table and "input + parameters" in table
    _, delta = seqlrp.Attribution(model, CONSERVING).attribute(x, target=result.target,
                                                                return_convergence_delta=True)
    assert float(delta.abs().max()) < 1e-6


def test_each_samples_parameter_relevance_does_not_depend_on_its_batch():
    model = tiny_vit()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    batch = explain(model, x, target=1)
    for i in range(3):
        alone = explain(model, x[i:i + 1], target=1)
        token = batch.parameter_relevance["class_token"][i:i + 1]
        assert torch.allclose(alone.parameter_relevance["class_token"], token, rtol=1e-10, atol=1e-12)
        assert torch.allclose(alone.relevance, batch.relevance[i:i + 1], rtol=1e-10, atol=1e-12)


class TokenThenLinear(nn.Module):
    """A learned token concatenated to the input: the input's relevance must not change when the token is a
    parameter (reported) instead of a buffer (a constant)."""

    def __init__(self, as_parameter: bool):
        super().__init__()
        torch.manual_seed(1)
        token = torch.randn(1, 2)
        if as_parameter:
            self.token = nn.Parameter(token)
        else:
            self.register_buffer("token", token)
        self.scale = nn.Parameter(torch.tensor(2.0))  # (used as a constant factor: no relevance reaches it)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.cat([self.token.expand(x.shape[0], -1), x * self.scale], 1))


def test_parameters_are_reported_without_changing_the_input_relevance():
    parameter, buffer = TokenThenLinear(True).double().eval(), TokenThenLinear(False).double().eval()
    buffer.fc.load_state_dict(parameter.fc.state_dict())
    x = torch.randn(2, 4, dtype=torch.float64)
    reported, constant = explain(parameter, x, target=0), explain(buffer, x, target=0)
    assert torch.equal(reported.relevance, constant.relevance)
    assert constant.parameter_relevance == {}
    assert set(reported.parameter_relevance) == {"token"}
    # the ε rule at fc with bias_factor 1: inputs + token == the logit; the token's share is fc's rule's
    weight, bias = parameter.fc.weight.detach()[0], parameter.fc.bias.detach()[0]
    a = torch.cat([parameter.token.detach().expand(2, -1), 2 * x], 1)
    expected = (a[:, :2] * weight[:2]).sum(1) + 2 * bias / 6  # (R_out = z: the shares a_j w_j + b / N)
    assert torch.allclose(reported.parameter_relevance["token"], expected, rtol=0, atol=1e-6)
