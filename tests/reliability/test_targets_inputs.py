"""Targets and inputs: every mistake is an error naming its cause; harmless variants are accepted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqlrp

from ..core.helpers import untouched
from .models import mlp, text_model

X = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
IDS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])


@pytest.mark.parametrize("target,error,match", [
    (10**20, ValueError, r"target 100000000000000000000 is out of range for an output with 3 classes \(valid: 0..2\)"),
    (-10**20, ValueError, r"target -100000000000000000000 is out of range"),
    ("3", TypeError, r"got the string '3' \(convert it: target=int\('3'\)\)"),
    ("cat", TypeError, r"got the string 'cat'"),
    (b"1", TypeError, r"got the string b'1'"),
    (1.0, TypeError, r"class indices \(integers\), got the number 1.0"),
    (True, TypeError, r"got a bool"),
    (torch.tensor([True, False]), TypeError, r"got a bool"),
    (torch.tensor([0.0, 1.0]), TypeError, r"got dtype torch.float32"),
    ([0, 5], ValueError, r"target 5 is out of range"),
    ([[0], [1]], ValueError, r"target must have shape \(2,\) for a batch of 2, got \(2, 1\)"),
    ({"a": 1}, TypeError, r"got dict"),
    (lambda out: None, TypeError, r"target callable returned None"),
    (lambda out: out, TypeError, r"got dtype torch.float64"),
])
def test_bad_targets(target, error, match):
    model = mlp()
    with untouched(model), pytest.raises(error, match=match):
        seqlrp.explain(model, X, target=target)


@pytest.mark.parametrize("target", [1, np.int64(1), torch.tensor(1), [1, 1], np.array([1, 1]), torch.tensor([1, 1]),
                                    lambda out: torch.ones(2, dtype=torch.long)])
def test_equivalent_target_forms(target):
    expected = seqlrp.explain(mlp(), X, target=1).relevance
    torch.testing.assert_close(seqlrp.explain(mlp(), X, target=target).relevance, expected, rtol=0, atol=0)


def test_text_target_out_of_range_is_named():
    with pytest.raises(ValueError, match=r"target 10 is out of range for an output with 3 classes"):
        seqlrp.explain_text(text_model(), IDS, target=10)


@pytest.mark.parametrize("inputs,error,match", [
    (torch.randn(4, dtype=torch.float64), ValueError, r"got \(3,\); the inputs of shape \(4,\) seem to lack the batch "
                                                      r"dimension: explain one example as inputs.unsqueeze\(0\)"),
    (torch.randn(2, 4), TypeError, r"inputs are torch.float32 on cpu but the model's parameters are torch.float64 on "
                                   r"cpu; convert with inputs.to"),
    (torch.randn(2, 5, dtype=torch.float64), ValueError, r"forward failed on inputs of shape \(2, 5\)"),
    (torch.zeros(0, 4, dtype=torch.float64), ValueError, r"non-empty batch dimension"),
    (torch.tensor(1.0, dtype=torch.float64), ValueError, r"non-empty batch dimension"),
    (np.ones((2, 4)), TypeError, r"inputs must be a torch.Tensor, got ndarray"),
    (torch.ones(2, 4, dtype=torch.complex128), TypeError, r"floating-point tensor, got dtype torch.complex128"),
])
def test_bad_inputs(inputs, error, match):
    model = mlp()
    with untouched(model), pytest.raises(error, match=match):
        seqlrp.explain(model, inputs)


def test_model_must_be_a_module():
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got function"):
        seqlrp.explain(lambda x: x, X)
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got function"):
        seqlrp.explain_text(lambda x: x, IDS)


def test_inputs_that_require_grad_or_are_views_are_explained_as_values():
    model = mlp()
    expected = seqlrp.explain(model, X).relevance
    leaf = X.clone().requires_grad_(True)
    torch.testing.assert_close(seqlrp.explain(model, leaf).relevance, expected, rtol=0, atol=0)
    assert leaf.grad is None
    wide = torch.cat([X, X], 1)[:, ::2]  # a non-contiguous view
    contiguous = seqlrp.explain(model, wide.contiguous()).relevance
    torch.testing.assert_close(seqlrp.explain(model, wide).relevance, contiguous, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
def test_small_integer_token_ids_equal_long_ids(dtype):
    model = text_model()
    expected = seqlrp.explain_text(model, IDS).token_relevance
    with untouched(model):
        result = seqlrp.explain_text(model, IDS.to(dtype))
    torch.testing.assert_close(result.token_relevance, expected, rtol=0, atol=0)


@pytest.mark.parametrize("ids,kw,error,match", [
    (IDS.float(), {}, TypeError, r"token_ids must be integer ids \(torch.long\), got dtype torch.float32"),
    (IDS.bool(), {}, TypeError, r"got dtype torch.bool"),
    ([[1, 2]], {}, TypeError, r"token_ids must be a torch.Tensor of integer ids, got list"),
    (torch.tensor([[1, 12]]), {}, ValueError, r"contain id 12, but the embedding has only 12 rows"),
    (torch.tensor([[-1, 2]]), {}, ValueError, r"negative id \(-1\)"),
    (IDS, {"lengths": torch.tensor([4.0, 3.0])}, ValueError, r"lengths must be 2 integers"),
    (IDS, {"lengths": torch.tensor([4])}, ValueError, r"lengths must be 2 integers"),
    (IDS, {"lengths": torch.tensor([5, 3])}, ValueError, r"lengths must be <= the padded length T=4"),
    (IDS, {"lengths": torch.tensor([0, 3])}, ValueError, r"lengths must be >= 1"),
    (IDS, {"lengths": "4,3"}, TypeError, r"lengths must be 2 integers"),
    (IDS, {"embedding": "emb"}, ValueError, r"no nn.Embedding named 'emb'; embeddings in the model: \['embedding'\]"),
])
def test_bad_text_inputs(ids, kw, error, match):
    model = text_model()
    with untouched(model), pytest.raises(error, match=match):
        seqlrp.explain_text(model, ids, **kw)


def test_lengths_for_a_forward_that_takes_none_are_named():
    class NoLengths(seqlrp.lstm.BiLSTMClassifier):
        def forward(self, ids):
            return super().forward(ids)

    torch.manual_seed(0)
    model = NoLengths(12, 5, 4, 3).double().eval()
    with untouched(model), pytest.raises(TypeError, match=r"lengths were given but NoLengths.forward takes only token "
                                                          r"ids"):
        seqlrp.explain_text(model, IDS, lengths=torch.tensor([4, 3]))


def test_a_model_that_casts_its_inputs_itself_is_not_refused():
    class Casting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = mlp()

        def forward(self, x):
            return self.inner(x.double())

    result = seqlrp.explain(Casting().eval(), X.float())
    torch.testing.assert_close(result.relevance, seqlrp.explain(mlp(), X).relevance.float(), rtol=1e-6, atol=1e-7)


def test_non_finite_relevance_is_an_error_naming_the_layer():
    from seqlrp.core.rules.base import Rule

    class Broken(Rule):  # a (user-registered) rule that divides by zero
        name = "broken_for_test"
        kinds = frozenset({"linear"})

        def relevance(self, view, inputs, out, relevance, nonnegative=()):
            return (inputs[0] / 0.0,)

    model = mlp()
    composite = {torch.nn.Linear: "epsilon", torch.nn.ReLU: "pass", "2": Broken()}
    with untouched(model), pytest.raises(ValueError, match=r"relevance became NaN or infinite at layer '2' \(Linear, "
                                                           r"rule broken_for_test"):
        seqlrp.explain(model, X, composite=composite)
