"""seqlrp.evaluate refuses bad inputs with a clear error (type + cause in the message); the model stays as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqlrp.evaluate import (
    aopc,
    region_perturbation,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    token_perturbation,
)

from ..core.helpers import assert_unchanged, snapshot


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.features(x))


class TinyText(nn.Module):
    """Embedding -> mean over the valid tokens -> linear; ``forward(ids, lengths=None)``."""

    def __init__(self, fail_with_lengths: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 2)
        self.dropout = nn.Dropout(0.5)
        self.fail_with_lengths = fail_with_lengths
        self.calls = []

    def forward(self, ids, lengths=None):
        self.calls.append(lengths is not None)
        if lengths is not None and self.fail_with_lengths:
            raise TypeError("my own bug: unsupported operand")
        return self.out(self.dropout(self.embedding(ids).mean(1)))


def cnn_case():
    torch.manual_seed(0)
    model = TinyCNN().eval()
    images = torch.rand(2, 2, 6, 6)
    return model, images, torch.randn(2, 2, 6, 6), torch.tensor([0, 2])


def text_case(**kw):
    torch.manual_seed(0)
    model = TinyText(**kw).eval()
    ids = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    return model, ids, torch.randn(2, 4), torch.tensor([0, 1])


def refuses(model, error, fragment, call):
    before = snapshot(model)
    with pytest.raises(error, match=fragment):
        call()
    assert_unchanged(model, before)


@pytest.mark.parametrize("function", ["region", "token"])
def test_zero_steps_is_a_value_error(function):
    if function == "region":
        model, images, relevance, target = cnn_case()
        refuses(model, ValueError, r"steps must be >= 1, got 0",
                lambda: region_perturbation(model, images, relevance, target, steps=0))
    else:
        model, ids, relevance, target = text_case()
        refuses(model, ValueError, r"steps must be >= 1, got 0",
                lambda: token_perturbation(model, ids, relevance, target, steps=0))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_relevance_is_refused_for_images_and_tokens(bad):
    model, images, relevance, target = cnn_case()
    relevance[0, 1, 2, 3] = bad
    refuses(model, ValueError, r"relevance contains .*(NaN|infinite)",
            lambda: region_perturbation(model, images, relevance, target))
    model, ids, relevance, target = text_case()
    relevance[1, 2] = bad
    refuses(model, ValueError, r"relevance contains .*(NaN|infinite)",
            lambda: token_perturbation(model, ids, relevance, target))


def test_int_targets_work_and_out_of_range_targets_are_named():
    model, ids, relevance, _ = text_case()
    before = snapshot(model)
    curves = token_perturbation(model, ids, relevance, 1, steps=2)  # a plain int: the same class for all
    assert curves.shape == (2, 3) and torch.isfinite(curves).all()
    assert_unchanged(model, before)
    refuses(model, ValueError, r"target 5 is out of range .* 2 classes",
            lambda: token_perturbation(model, ids, relevance, 5))
    model, images, relevance, _ = cnn_case()
    refuses(model, TypeError, r"target must hold class indices",
            lambda: region_perturbation(model, images, relevance, torch.tensor([0.0, 1.0])))


@pytest.mark.parametrize("function", ["region", "token"])
def test_a_model_in_train_mode_is_refused(function):
    if function == "region":
        model, images, relevance, target = cnn_case()
        model.train()
        refuses(model, RuntimeError, r"training mode .* call model.eval\(\)",
                lambda: region_perturbation(model, images, relevance, target))
    else:
        model, ids, relevance, target = text_case()
        model.train()
        refuses(model, RuntimeError, r"training mode .* call model.eval\(\)",
                lambda: token_perturbation(model, ids, relevance, target))
    assert model.training


def test_the_models_own_type_error_propagates_and_lengths_decide_the_call():
    model, ids, relevance, target = text_case(fail_with_lengths=True)
    refuses(model, TypeError, r"my own bug",
            lambda: token_perturbation(model, ids, relevance, target, lengths=torch.tensor([3, 4])))
    assert model.calls == [True]  # called once with lengths, not retried without
    model, ids, relevance, target = text_case(fail_with_lengths=True)
    token_perturbation(model, ids, relevance, target, steps=2)
    assert model.calls == [False, False, False]  # no lengths given: model(ids)


def test_relevance_of_the_wrong_shape_is_named():
    model, images, _, target = cnn_case()
    refuses(model, ValueError, r"relevance has shape \(2, 6, 5\); expected \(2, 6, 6\) or \(2, C, 6, 6\)",
            lambda: region_perturbation(model, images, torch.randn(2, 6, 5), target))
    model, ids, _, target = text_case()
    refuses(model, ValueError, r"relevance has shape \(2, 4, 3\); expected the token ids' shape \(2, 4\)",
            lambda: token_perturbation(model, ids, torch.randn(2, 4, 3), target))


@pytest.mark.parametrize(("patch", "error", "fragment"), [
    (0, ValueError, r"patch must be >= 1, got 0"),
    (2.0, TypeError, r"patch must be an int, got float"),
    (7, ValueError, r"patch must be at most the image size min\(H, W\) = 6, got 7"),
])
def test_bad_patch_sizes(patch, error, fragment):
    model, images, relevance, target = cnn_case()
    refuses(model, error, fragment, lambda: region_perturbation(model, images, relevance, target, patch=patch))


@pytest.mark.parametrize(("keyword", "value", "fragment"), [
    ("order", "mrof", r"order must be one of \('morf', 'lerf', 'random'\), got 'mrof'"),
    ("score", "prob", r"score must be one of \('logit', 'probability'\), got 'prob'"),
    ("replacement", "noise", r"replacement must be one of \('constant', 'mean', 'blur', 'uniform'\)"),
    ("fraction", 0.0, r"fraction must be a number in \(0, 1\], got 0.0"),
])
def test_bad_choices_for_images(keyword, value, fragment):
    model, images, relevance, target = cnn_case()
    refuses(model, ValueError, fragment,
            lambda: region_perturbation(model, images, relevance, target, **{keyword: value}))


def test_uniform_noise_needs_an_ordered_range_of_the_right_shape():
    model, images, relevance, target = cnn_case()
    refuses(model, ValueError, r"low < high",
            lambda: region_perturbation(model, images, relevance, target, replacement="uniform", low=1.0, high=0.0))
    refuses(model, ValueError, r"low must be a number or broadcast to one image",
            lambda: region_perturbation(model, images, relevance, target, replacement="uniform",
                                        low=torch.zeros(1, 3, 1, 1)))


@pytest.mark.parametrize(("keyword", "value", "error", "fragment"), [
    ("order", "random-ish", ValueError, r"order must be one of"),
    ("score", "loss", ValueError, r"score must be one of"),
    ("replacement", "drop", ValueError, r"replacement must be 'remove' or a token id \(int\), got 'drop'"),
    ("lengths", torch.tensor([0, 4]), ValueError, r"lengths must lie in 1..4"),
    ("lengths", torch.tensor([3.0, 4.0]), TypeError, r"lengths must hold integers"),
    ("lengths", torch.tensor([3, 4, 4]), ValueError, r"lengths must have shape \(2,\)"),
    ("pad_id", 0.5, TypeError, r"pad_id must be an int"),
])
def test_bad_arguments_for_tokens(keyword, value, error, fragment):
    model, ids, relevance, target = text_case()
    refuses(model, error, fragment, lambda: token_perturbation(model, ids, relevance, target, **{keyword: value}))


def test_float_token_ids_are_a_type_error():
    model, ids, relevance, target = text_case()
    refuses(model, TypeError, r"token_ids must be an integer tensor",
            lambda: token_perturbation(model, ids.float(), relevance, target))


def test_ground_truth_masks_must_be_boolean_non_empty_and_shaped_like_the_positions():
    relevance = torch.randn(2, 3, 4, 4)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 0, 0] = True
    for metric in (relevance_mass_accuracy, relevance_rank_accuracy):
        with pytest.raises(TypeError, match=r"mask must have dtype torch.bool .* got torch.float32"):
            metric(relevance, mask.float())
        with pytest.raises(ValueError, match=r"relevance has shape \(2, 3, 4, 4\); expected \(2, 4, 5\)"):
            metric(relevance, torch.ones(2, 4, 5, dtype=torch.bool))
        empty = mask.clone()
        empty[1] = False
        with pytest.raises(ValueError, match=r"mask of sample\(s\) \[1\] is empty"):
            metric(relevance, empty)
        bad = relevance.clone()
        bad[0, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match=r"relevance contains 1 NaN"):
            metric(bad, mask)


def test_aopc_of_non_finite_or_too_short_curves():
    with pytest.raises(ValueError, match=r"curves contains 1 NaN"):
        aopc(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"curves must be \(B, L \+ 1\) with B >= 1 and L >= 1"):
        aopc(torch.tensor([[1.0]]))
