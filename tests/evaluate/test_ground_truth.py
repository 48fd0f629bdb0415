"""Relevance mass / rank accuracy against hand-computed values, their conventions, and a slow reference."""

from __future__ import annotations

import itertools

import torch

from seqlrp.evaluate import compare_ground_truth, relevance_mass_accuracy, relevance_rank_accuracy

T, F = True, False


def test_mass_accuracy_sums_channels_first_and_counts_positive_relevance_only():
    # two channels: pixel sums are [[1, -1], [2, 0]] -> positive parts 1, 0, 2, 0
    relevance = torch.tensor([[[[3.0, 1.0], [2.0, 5.0]], [[-2.0, -2.0], [0.0, -5.0]]]])
    mask = torch.tensor([[[T, T], [F, F]]])
    torch.testing.assert_close(relevance_mass_accuracy(relevance, mask), torch.tensor([1 / 3], dtype=torch.float64))
    # per channel first would give (3 + 1) / (3 + 1 + 2 + 5): the pixel sum is what counts
    torch.testing.assert_close(relevance_mass_accuracy(relevance.sum(1), mask),
                               relevance_mass_accuracy(relevance, mask), rtol=0, atol=0)


def test_mass_accuracy_without_positive_relevance_is_zero():
    mask = torch.tensor([[T, F, F], [F, T, F]])
    relevance = torch.tensor([[0.0, 0.0, 0.0], [-1.0, -2.0, -0.5]])
    assert relevance_mass_accuracy(relevance, mask).tolist() == [0.0, 0.0]


def test_rank_accuracy_hand_computed_with_and_without_ties():
    relevance = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0],   # K = 2, top-2 = {0, 1}: one inside
                              [5.0, 1.0, 1.0, 1.0, 0.0],   # K = 2: 5 (outside), then 1 of 3 tied 1's (one inside)
                              [0.0, 0.0, 0.0, 0.0, 0.0],   # K = 3, all tied: chance = 3 / 5
                              [-1.0, -3.0, -2.0, -4.0, -5.0]])  # K = 1: the largest (-1) is inside
    mask = torch.tensor([[T, F, F, F, T],
                         [F, T, F, F, T],
                         [T, T, F, T, F],
                         [T, F, F, F, F]])
    expected = torch.tensor([1 / 2, (0 + 1 * 1 / 3) / 2, 3 / 5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(relevance_rank_accuracy(relevance, mask), expected, rtol=1e-15, atol=0)


def test_tie_convention_is_the_mean_over_all_tie_breaks():
    # K = 3: 9 (outside) first, then 2 places for the four tied 2's, two of which are inside:
    # expected hits = 0 + 2 * 2/4 = 1, rank accuracy 1/3
    relevance = torch.tensor([[9.0, 2.0, 2.0, 2.0, 2.0, -1.0]])
    mask = torch.tensor([[F, T, T, F, F, T]])
    assert float(relevance_rank_accuracy(relevance, mask)) == 1 / 3
    broken = []
    for order in itertools.permutations([1, 2, 3, 4]):  # every strict order of the tied positions
        values = relevance.clone()
        for rank, position in enumerate(order):
            values[0, position] -= 0.1 * rank
        broken.append(float(relevance_rank_accuracy(values, mask)))
    assert abs(sum(broken) / len(broken) - 1 / 3) < 1e-15


def slow_reference(relevance: torch.Tensor, mask: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-sample Python loops over positions (no ties in continuous random values)."""
    mass, rank = [], []
    for r, m in zip(relevance.sum(1).flatten(1).tolist(), mask.flatten(1).tolist(), strict=True):
        positive = [max(v, 0.0) for v in r]
        mass.append(sum(p for p, inside in zip(positive, m, strict=True) if inside) / sum(positive))
        k = sum(m)
        top = sorted(range(len(r)), key=lambda i: -r[i])[:k]
        rank.append(sum(m[i] for i in top) / k)
    return mass, rank


def test_batched_metrics_match_a_slow_reference_on_images():
    generator = torch.Generator().manual_seed(0)
    relevance = torch.randn(6, 3, 7, 5, generator=generator, dtype=torch.float64)
    mask = torch.rand(6, 7, 5, generator=generator) < 0.3
    mask[:, 0, 0] = True
    mass, rank = slow_reference(relevance, mask)
    torch.testing.assert_close(relevance_mass_accuracy(relevance, mask), torch.tensor(mass, dtype=torch.float64))
    torch.testing.assert_close(relevance_rank_accuracy(relevance, mask), torch.tensor(rank, dtype=torch.float64))


def test_token_masks_and_the_comparison_rows():
    relevance = torch.tensor([[0.1, 2.0, -1.0, 0.5]], dtype=torch.float64)  # (B, T) token relevance, no channels
    mask = torch.tensor([[F, T, F, F]])
    assert relevance_mass_accuracy(relevance, mask).item() == 2.0 / 2.6
    assert relevance_rank_accuracy(relevance, mask).item() == 1.0
    rows = compare_ground_truth(None, relevance, None, mask.expand(3, 4), {
        "exact": lambda m, x, t: torch.tensor([[0.0, 1.0, 0.0, 0.0]]).expand(3, 4),
        "opposite": lambda m, x, t: torch.tensor([[1.0, 0.0, 1.0, 1.0]]).expand(3, 4),
    })
    values = {(r["explainer"], r["metric"]): r["value"] for r in rows}
    assert values == {("exact", "mass accuracy"): 1.0, ("exact", "rank accuracy"): 1.0,
                      ("opposite", "mass accuracy"): 0.0, ("opposite", "rank accuracy"): 0.0}
    assert all(r["n"] == 3 for r in rows)
