"""seqlrp as Quantus's explainer on scikit-learn's digits, and seqlrp's AOPC against Quantus's RegionPerturbation.

Quantus (PyPI ``quantus``, test-only, in the ``dev`` extra) is skipped when absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.evaluate import aopc, region_perturbation

quantus = pytest.importorskip("quantus", reason="quantus is not installed (pip install quantus); skipped")


def digits_model():
    """A small CNN trained for a few epochs on 1,200 of scikit-learn's 8x8 digits (a few seconds on 2 cores)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(digits.target)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        order = torch.randperm(1200, generator=generator)
        for start in range(0, 1200, 64):
            idx = order[start:start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images[idx]), labels[idx]).backward()
            optimizer.step()
    model.eval()
    test_x, test_y = images[1200:1232], labels[1200:1232]
    return model, test_x, test_y


COMPOSITE = seqlrp.Composite({seqlrp.FIRST: ("zbox", {"low": 0.0, "high": 1.0}),
                              nn.Conv2d: ("gamma", {"gamma": 0.25}), nn.Linear: ("epsilon", {"epsilon": 0.1}),
                              nn.ReLU: "pass", nn.MaxPool2d: "winner_takes_all"})


@pytest.fixture(scope="module")
def digits():
    model, x, y = digits_model()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).double().mean())
    assert accuracy > 0.8, accuracy
    return model, x, y


def test_attribution_is_quantus_explain_func(digits):
    model, x, y = digits
    relevance = seqlrp.quantus_explain(model=model, inputs=x.numpy(), targets=y.numpy(), composite=COMPOSITE)
    expected = seqlrp.explain(model, x, y, COMPOSITE).relevance.numpy()
    assert isinstance(relevance, np.ndarray) and relevance.shape == tuple(x.shape)
    np.testing.assert_allclose(relevance, expected, rtol=1e-6, atol=1e-7)
    # Quantus metrics accept it as explain_func: a sanity metric and a faithfulness metric
    sparseness = quantus.Sparseness(disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=seqlrp.quantus_explain,
        explain_func_kwargs={"composite": COMPOSITE}, device="cpu")
    assert len(sparseness) == len(x) and all(0 <= s <= 1 for s in sparseness)


def region_aopc(model, x, y, relevance, order: str):
    """AOPC of 2x2 regions, one region a step, all 16 regions, replaced by 0, logits: seqlrp and Quantus."""
    ours = aopc(region_perturbation(model, x, torch.as_tensor(relevance), y, patch=2, order=order, steps=16,
                                    replacement="constant", value=0.0, score="logit"))
    metric = quantus.RegionPerturbation(patch_size=2, regions_evaluation=16, order=order, perturb_baseline=0.0,
                                        normalise=False, abs=False, disable_warnings=True, display_progressbar=False)
    curves = np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=relevance, softmax=False,
                               device="cpu"))
    theirs = curves.sum(1) / (curves.shape[1] + 1)  # Quantus: f(x) - f(x_k), k = 1..L; AOPC averages k = 0..L
    return ours.double().numpy(), theirs


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_aopc_agrees_with_quantus(digits, order):
    model, x, y = digits
    relevance = seqlrp.Attribution(model, COMPOSITE).attribute(x, target=y).numpy()
    ours, theirs = region_aopc(model, x, y, relevance, order)
    difference = np.abs(ours - theirs)
    print(f"{order}: seqlrp AOPC {ours.mean():.6f}, Quantus {theirs.mean():.6f}, max |diff| per sample "
          f"{difference.max():.2e}")
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
