"""The one pipeline: a family plugs in through the Inputs seam; one explainer vocabulary; one text/image test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.core.inputs import input_kind
from seqlrp.core.pipeline import MODES, Inputs, TensorInputs, propagate
from seqlrp.core.session import Session


class MaskedHead(nn.Module):
    """``(embeddings (B, T, E), attention mask (B, T))`` -> logits: what a transformer family feeds."""

    def __init__(self, steps=4, width=3, classes=2):
        super().__init__()
        self.fc = nn.Linear(steps * width, classes)

    def forward(self, embeddings, mask):
        return self.fc(embeddings.masked_fill(~mask[..., None], 0.0).flatten(1))


class EmbeddingsWithMask(Inputs):
    """The seam for embeddings with an attention mask: the embeddings are the leaf, the mask rides along."""

    def __init__(self, embeddings, mask):
        self.x, self.mask = embeddings.detach().requires_grad_(True), mask
        self.batch, self.shape = embeddings.shape[0], tuple(embeddings.shape)
        self.read = []

    def forward_args(self):
        return (self.x, self.mask)

    def leaf(self):
        return self.x

    def readback(self, result, gradient, sink_relevance, session, mode):
        self.read.append(mode)
        result.relevance = result.relevance.sum(-1)  # per token
        return result


def test_a_new_family_plugs_in_through_the_seam_and_gets_the_generic_explanation():
    torch.manual_seed(0)
    model = MaskedHead().double().eval()
    x, mask = torch.randn(2, 4, 3, dtype=torch.float64), torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).bool()
    composite = seqlrp.EpsilonEverywhere(epsilon=1e-9)
    session = Session(composite)
    inputs = EmbeddingsWithMask(x, mask)
    result = propagate(session.wrap(model), inputs, 1, "logit", session)
    assert inputs.read == ["lrp"] and result.relevance.shape == (2, 4)
    assert bool((result.relevance[~mask] == 0).all())  # masked tokens: no relevance

    class Fixed(nn.Module):  # the same function of x alone, explained by seqlrp.explain
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, e):
            return self.model(e, mask)

    reference = seqlrp.explain(Fixed().eval(), x, 1, composite)
    assert torch.allclose(result.relevance, reference.relevance.sum(-1), rtol=0, atol=1e-12)
    # the ε rule without bias: relevance of each sample sums to its logit minus the bias
    logit_minus_bias = result.output[:, 1] - model.fc.bias[1].detach()
    assert torch.allclose(result.relevance.sum(1), logit_minus_bias, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_one_name_for_the_explainer_choice(mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2)).double().eval()
    x = torch.randn(2, 3, dtype=torch.float64)
    result = propagate(model, TensorInputs(x), 0, "one", mode=mode)
    weight = model[0].weight[0].detach().expand(2, 3)
    assert torch.allclose(result.relevance, weight * x if mode == "gradient_x_input" else weight)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        propagate(nn.Linear(3, 2).eval(), torch.randn(2, 3), 0, "one", mode="times_input")


@pytest.mark.parametrize("x,kind", [
    (torch.tensor([[1, 2]]), "text"), (torch.tensor([[1, 2]], dtype=torch.uint8), "text"),
    (torch.zeros(1, 3), "image"), (torch.zeros(1, 3, dtype=torch.float16), "image"),
    (torch.zeros(1, 3, dtype=torch.bool), "image"), ([1, 2, 3], "text"), (["a", "b"], "text"),
])
def test_one_function_decides_text_or_image(x, kind):
    assert input_kind(x) == kind
