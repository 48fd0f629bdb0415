"""Inputs as users write them: one line naming the cause and the fix (issue 25, "inputs as users write them")."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from torch import nn

import seqlrp

from ..core.helpers import untouched
from .models import mlp, text_model

matplotlib.use("Agg")

X = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
IDS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
META = r"on the meta device \(shapes only, no values\)"


def test_inputs_on_the_meta_device():
    with pytest.raises(ValueError, match=rf"inputs are {META}"):
        seqlrp.explain(mlp(), X.to("meta"))
    with pytest.raises(ValueError, match=rf"token_ids are {META}"):
        seqlrp.explain_text(text_model(), IDS.to("meta"))


@pytest.mark.parametrize("inputs_on_meta", [False, True])
def test_a_model_on_the_meta_device(inputs_on_meta):
    model = mlp().to("meta")
    x = X.to("meta") if inputs_on_meta else X
    with pytest.raises(ValueError, match=rf"the model's parameter '0.weight' is {META}.*load_state_dict"):
        seqlrp.explain(model, x)
    with pytest.raises(ValueError, match=rf"the model's parameter 'embedding.weight' is {META}"):
        seqlrp.explain_text(text_model().to("meta"), IDS)


class ChangesItsInput(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.fc, self.how = nn.Linear(4, 3), how

    def forward(self, x):
        if self.how == "mul_":
            x.mul_(2)
        elif self.how == "+=":
            x += 1
        else:
            x[:, 0] = 0
        return self.fc(x)


@pytest.mark.parametrize("how", ["mul_", "+=", "setitem"])
def test_a_model_that_changes_its_input_in_place(how):
    torch.manual_seed(0)
    model = ChangesItsInput(how).double().eval()
    x = X.clone()
    with untouched(model), pytest.raises(ValueError, match=r"the model changed its input in place \(x.mul_\(\), "
                                                           r"x \+= \.\.\., x\[\.\.\.\] = \.\.\.\).*x = x.clone\(\)"):
        seqlrp.explain(model, x)
    assert torch.equal(x, X)  # (the caller's tensor is never written)


def test_a_text_model_that_changes_its_embeddings_in_place():
    class Scales(seqlrp.lstm.BiLSTMClassifier):
        def forward(self, ids, lengths=None):
            x = self.embedding(ids)
            x *= 2
            _, (h, _) = self.lstm(x)
            return self.classifier(torch.cat([h[0], h[1]], 1))

    torch.manual_seed(0)
    model = Scales(12, 5, 4, 3).double().eval()
    with pytest.raises(ValueError, match=r"the model changed its input in place"):
        seqlrp.explain_text(model, IDS)


@pytest.mark.parametrize("index", [2, -3, 10])
def test_an_index_past_the_batch(index):
    result = seqlrp.explain(mlp(), X)
    text = seqlrp.explain_text(text_model(), IDS)
    match = rf"index {index} is past the batch: the explanation holds 2 examples \(0\.\.1\)"
    with pytest.raises(IndexError, match=match):
        seqlrp.viz.show(result, index)
    with pytest.raises(IndexError, match=match):
        seqlrp.viz.Report().add_text(text, index)
    with pytest.raises(IndexError, match=match):
        seqlrp.viz.Report().add_comparison({"LRP": result}, index, image=torch.zeros(4))


@pytest.mark.parametrize("index", [1.0, True, "1"])
def test_an_index_that_is_not_an_int(index):
    result = seqlrp.explain(mlp(), X)
    with pytest.raises(TypeError, match=r"index must be an int \(the example's position in the batch\)"):
        seqlrp.viz.show(result, index)


def test_a_negative_index_within_the_batch_is_the_last_example():
    text = seqlrp.explain_text(text_model(), IDS)
    report = seqlrp.viz.Report()
    report.add_text(text, -1)
    assert report.sections[0].examples[0]["panels"][0]["values"].shape == (4,)


def test_indexing_a_result_gives_one_example_and_refuses_an_index_past_the_batch():
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    text = seqlrp.explain_text(text_model(padding_idx=0), ids, lengths=torch.tensor([4, 2]),
                               tokens=[list("abcd"), list("ef")])
    last = text[-1]
    assert type(last) is type(text) and last.tokens == [list("ef")] and last.lengths.tolist() == [2]
    assert torch.equal(last.token_relevance, text.token_relevance[1:]) and torch.equal(last.output, text.output[1:])
    assert torch.equal(last.direction_relevance, text.direction_relevance[:, 1:])
    rows, all_rows = last.conservation(), text.conservation()
    assert len(rows) == len(all_rows) and all(torch.equal(a.relevance_out, b.relevance_out[1:])
                                              for a, b in zip(rows, all_rows, strict=True))
    result = seqlrp.explain(mlp(), X)
    assert torch.equal(result[0].relevance, result.relevance[:1])
    with pytest.raises(IndexError, match=r"index 2 is past the batch: the explanation holds 2 examples \(0\.\.1\)"):
        result[2]
