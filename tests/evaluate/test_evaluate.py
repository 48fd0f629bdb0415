"""AOPC against an analytic value; perturbations touch all channels; orders; padding never perturbed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.evaluate import (
    aopc,
    compare_images,
    format_table,
    region_perturbation,
    replacement_image,
    summarize,
    token_perturbation,
)


def linear_image_model():
    torch.manual_seed(0)
    lin = nn.Linear(2 * 3 * 3, 1, bias=False).double()
    return nn.Sequential(nn.Flatten(), lin).eval(), lin


def test_aopc_of_a_linear_model_equals_the_analytic_value():
    model, lin = linear_image_model()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    target = torch.zeros(2, dtype=torch.long)
    contribution = (lin.weight.view(2, 3, 3) * x)  # exact relevance of f(x) = w·x
    curves = region_perturbation(model, x, contribution, target, patch=1, order="morf", steps=9)
    # pixel (i, j) removes both channels: drop = sum over channels of w x, removed in descending order
    drops = contribution.sum(1).flatten(1).sort(1, descending=True).values
    expected_curve = model(x)[:, 0:1] - torch.cat([torch.zeros(2, 1, dtype=torch.float64), drops.cumsum(1)], 1)
    torch.testing.assert_close(curves, expected_curve, rtol=1e-12, atol=1e-12)
    analytic = (drops.cumsum(1).sum(1)) / 10  # (1 / (L + 1)) Σ_k (f(x0) - f(xk)), k = 0..9
    torch.testing.assert_close(aopc(curves), analytic, rtol=1e-12, atol=1e-12)
    lerf = region_perturbation(model, x, contribution, target, order="lerf", steps=9)
    assert (aopc(curves) >= aopc(lerf)).all()


def test_perturbation_replaces_all_channels_of_a_region():
    seen = []

    def spy(images):
        seen.append(images.clone())
        return images.flatten(1)[:, :3]

    x = torch.ones(1, 3, 4, 4)
    relevance = torch.zeros(1, 3, 4, 4)
    relevance[0, 1, 0:2, 2:4] = 1.0  # the most relevant 2x2 patch (relevance in one channel only)
    region_perturbation(spy, x, relevance, torch.tensor([0]), patch=2, order="morf", steps=4, value=-1.0)
    first = seen[1][0]
    assert (first[:, 0:2, 2:4] == -1).all()  # all three channels of the region
    assert (first == -1).sum() == 3 * 4


def test_orders_are_what_they_claim():
    x = torch.zeros(1, 1, 1, 5)
    relevance = torch.tensor([[[[0.3, -1.0, 2.0, 0.0, 1.0]]]])
    order_seen = {}
    for order in ("morf", "lerf", "random"):
        seen = []

        def spy(images, seen=seen):
            seen.append(images.clone())
            return images.flatten(1)

        region_perturbation(spy, x, relevance, torch.tensor([0]), order=order, steps=5, value=1.0,
                            generator=torch.Generator().manual_seed(3))
        picks = [int(((b - a)[0, 0, 0] != 0).nonzero()[0]) for a, b in zip(seen[:-1], seen[1:], strict=True)]
        order_seen[order] = picks
    assert order_seen["morf"] == [2, 4, 0, 3, 1]
    assert order_seen["lerf"] == [1, 3, 0, 4, 2]
    assert sorted(order_seen["random"]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("replacement", ["remove", 1])
def test_token_padding_is_never_perturbed(replacement):
    seen = []

    def model(ids, lengths):
        seen.append((ids.clone(), lengths.clone()))
        return torch.stack([ids.double().sum(1), -ids.double().sum(1)], 1)

    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    lengths = torch.tensor([3, 5])
    relevance = torch.tensor([[1.0, 3.0, 2.0, 9.0, 9.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    curves = token_perturbation(model, ids, relevance, torch.tensor([0, 0]), lengths=lengths, steps=4,
                                replacement=replacement)
    assert curves.shape == (2, 5)
    for perturbed, new_lengths in seen:
        assert (perturbed[0, 3:] == 0).all()  # the padding of sequence 0 stays padding
        assert new_lengths[0] >= 1
    first_ids, _ = seen[1]
    if replacement == "remove":  # MoRF removes token 6 (relevance 3) first; later ones shift left
        assert first_ids[0].tolist() == [5, 7, 0, 0, 0] and first_ids[1].tolist() == [9, 10, 11, 12, 0]
    else:
        assert first_ids[0].tolist() == [5, 1, 7, 0, 0]


def test_summary_and_comparison_table():
    s = summarize(torch.tensor([1.0, 2.0, 3.0]))
    assert s.mean == 2.0 and s.low < 2.0 < s.high and s.n == 3
    model, lin = linear_image_model()
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    target = torch.zeros(4, dtype=torch.long)
    rows = compare_images(model, x, target, {
        "LRP-0": lambda m, inp, t: seqlrp.explain(m, inp, t, seqlrp.ZeroEverywhere()).relevance,
        "random": seqlrp.evaluate.random_explainer(),
    }, steps=9)
    table = {(r["explainer"], r["order"]): r["aopc"] for r in rows}
    assert table[("LRP-0", "morf")] > table[("random", "morf")]
    assert table[("LRP-0", "morf-lerf gap")] > 0
    assert "LRP-0" in format_table(rows)


def recording_model(seen: list):
    def model(images):
        seen.append(images.clone())
        return images.flatten(1)[:, :3]

    return model


def test_uniform_noise_lies_in_the_input_range_and_every_order_sees_the_same_noise():
    images = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    low = torch.tensor([-1.0, 0.0, 2.0]).view(1, 3, 1, 1)  # per-channel box, e.g. normalized inputs
    high = torch.tensor([0.0, 0.5, 3.0]).view(1, 3, 1, 1)
    relevance = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(2))
    final = {}
    for order in ("morf", "lerf", "random"):
        seen = []
        region_perturbation(recording_model(seen), images, relevance, torch.tensor([0, 1]), order=order, steps=2,
                            replacement="uniform", low=low, high=high, generator=torch.Generator().manual_seed(7))
        final[order] = seen[-1]  # every pixel replaced
    assert torch.equal(final["morf"], final["lerf"]) and torch.equal(final["morf"], final["random"])
    assert ((final["morf"] >= low) & (final["morf"] < high)).all()
    for c in range(3):  # spread over the channel's range, not a constant
        assert final["morf"][:, c].max() - final["morf"][:, c].min() > 0.3 * float(high[0, c] - low[0, c])
    expected = replacement_image(images, "uniform", low=low, high=high, generator=torch.Generator().manual_seed(7))
    assert torch.equal(final["morf"], expected)


def test_edge_regions_are_ranked_by_the_sum_of_their_own_pixels():
    relevance = torch.zeros(1, 1, 5, 5)
    relevance[0, 0, 0:2, 0:2] = 1.0  # a full 2x2 region: sum 4
    relevance[0, 0, 2:4, 4] = 1.5  # the right edge region holds only 2 pixels: sum 3 (a mean x 4 would say 6)
    seen = []
    region_perturbation(recording_model(seen), torch.zeros(1, 1, 5, 5), relevance, torch.tensor([0]), patch=2,
                        steps=9, value=1.0)
    assert seen[1][0, 0].sum() == 4 and (seen[1][0, 0, 0:2, 0:2] == 1).all()
    assert seen[2][0, 0].sum() == 6 and (seen[2][0, 0, 2:4, 4] == 1).all()


def test_fraction_perturbs_only_the_first_share_of_the_regions():
    relevance = torch.arange(16.0).view(1, 1, 4, 4)
    seen = []
    curves = region_perturbation(recording_model(seen), torch.zeros(1, 1, 4, 4), relevance, torch.tensor([0]),
                                 steps=3, fraction=0.5, value=1.0)
    assert curves.shape == (1, 4)
    assert [int(s.sum()) for s in seen] == [0, 3, 6, 8]  # ceil(8 / 3) = 3 more per step, capped at 8
    assert (seen[-1][0, 0].flatten()[8:] == 1).all()  # the 8 most relevant pixels


def test_blur_of_an_impulse_is_the_normalized_gaussian_and_mean_is_per_channel():
    images = torch.zeros(1, 2, 15, 15, dtype=torch.float64)
    images[0, 0, 7, 7] = 1.0
    images[0, 1] = 2.0
    blurred = replacement_image(images, "blur", sigma=1.5)
    offsets = torch.arange(-4, 5, dtype=torch.float64)  # kernel 2 * ceil(4.5) + 1 = 11 reaches past +-4
    g = torch.exp(-offsets**2 / (2 * 1.5**2))
    kernel_1d = torch.exp(-torch.arange(-5, 6, dtype=torch.float64) ** 2 / (2 * 1.5**2))
    g = g / kernel_1d.sum()
    torch.testing.assert_close(blurred[0, 0, 3:12, 3:12], g[:, None] * g[None, :], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(blurred[0, 1], torch.full((15, 15), 2.0, dtype=torch.float64))
    mean = replacement_image(images, "mean")
    assert torch.equal(mean[0, 0], torch.full((15, 15), 1 / 225, dtype=torch.float64))
    assert torch.equal(mean[0, 1], torch.full((15, 15), 2.0, dtype=torch.float64))


def test_comparison_shares_the_noise_and_the_random_curve_across_explainers():
    images = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    seen = []
    rows = compare_images(recording_model(seen), images, torch.tensor([0, 1, 2]), {
        "a": lambda m, x, t: x,
        "b": lambda m, x, t: -x,
    }, replacement="uniform", steps=2)
    assert len(seen) == 3 * (2 + 2 + 1)  # morf, lerf for each explainer; random once (3 forwards each)
    finals = seen[2::3]
    assert all(torch.equal(final, finals[0]) for final in finals)
    random = [r for r in rows if r["order"] == "random"]
    assert len(random) == 2 and random[0]["aopc"] == random[1]["aopc"]
    assert {r["replacement"] for r in rows} == {"uniform"}
