"""The named comparison set: every method runs on a canonizable CNN, and the derived ones are what they say."""

from __future__ import annotations

import torch
from torch import nn

from seqlrp.evaluate import image_explainers, random_explainer

from ..core.helpers import assert_unchanged, snapshot


def test_image_explainers_on_a_batch_normalized_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3)).eval()
    x, target = torch.rand(2, 3, 6, 6), torch.tensor([0, 2])
    before = snapshot(model)
    methods = image_explainers(0.0, 1.0, epsilon=0.5)
    assert list(methods) == ["LRP EpsilonPlusFlat", "LRP EpsilonGammaBox", "LRP EpsilonAlpha2Beta1", "LRP ε=0.5",
                             "gradient", "sensitivity (gradient²)", "gradient x input", "guided backprop", "random"]
    relevance = {name: explain(model, x, target) for name, explain in methods.items()}
    assert all(r.shape == x.shape and torch.isfinite(r).all() for r in relevance.values())
    torch.testing.assert_close(relevance["sensitivity (gradient²)"], relevance["gradient"] ** 2)
    torch.testing.assert_close(relevance["gradient x input"], relevance["gradient"] * x)
    assert_unchanged(model, before)


def test_random_explainer_is_seeded_and_centred():
    a = random_explainer(3)(None, torch.zeros(2, 5), None)
    assert torch.equal(a, random_explainer(3)(None, torch.zeros(2, 5), None))
    assert not torch.equal(a, random_explainer(4)(None, torch.zeros(2, 5), None))
    assert ((a >= -0.5) & (a < 0.5)).all()
