"""Friction a new user hits: notebook HTML, short reprs, a numerical-health warning, a forward that needs lengths
(issue 25, "friction")."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.core import checks

from .models import mlp, text_model

X = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
IDS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])


def test_repr_html_is_a_plain_str_that_does_not_escape_the_users_html():
    for result in (seqlrp.explain(mlp(), X), seqlrp.explain_text(text_model(), IDS)):
        html = result._repr_html_()
        assert type(html) is str
        page = "<h1>mine</h1>" + html
        assert page.startswith("<h1>mine</h1>") and "&lt;h1&gt;" not in page


@pytest.mark.parametrize("kind", ["image", "text"])
def test_repr_is_short(kind):
    if kind == "image":
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
        model(torch.zeros(1, 3, 64, 64))
        x = torch.rand(2, 3, 64, 64)
        result = seqlrp.explain(model.eval(), x, composite={
            seqlrp.FIRST: ("zbox", {"low": torch.zeros(1, 3, 64, 64), "high": torch.ones(1, 3, 64, 64)}),
            **seqlrp.EpsilonEverywhere()})
        assert len(repr(result.coverage)) < 600 and len(str(result.coverage)) < 600
        assert "zbox(low=(12288 values in [0, 0]), high=(12288 values in [1, 1])" in str(result.coverage)
    else:
        result = seqlrp.explain_text(text_model(), IDS.repeat(50, 10), tokens=[["w"] * 40] * 100)
    text = repr(result)
    assert len(text) < 700, text
    assert text.startswith(f"{type(result).__name__}(") and "relevance=Tensor(" in text
    assert "target=" in text and "coverage=" in text


def test_repr_of_a_rule_with_tensor_bounds_is_short_but_its_params_are_exact():
    rule = seqlrp.rules.ZBox(torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8))
    assert len(repr(rule)) < 120
    assert len(rule.params()["low"]) == 3 * 8 * 8


class Cancels(nn.Module):
    """One hidden unit whose inputs cancel (z = 1e-10 of contributions ±1): ε decides the relevance's scale."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, 2, bias=False), nn.Linear(2, 1)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
            self.fc2.weight.copy_(torch.tensor([[1e9, 1.0]]))
            self.fc2.bias.fill_(0.1)

    def forward(self, x):
        return torch.cat([self.fc2(self.fc1(x)), torch.zeros_like(x[:, :1])], 1)


def test_relevance_far_above_the_explained_score_warns_naming_epsilon():
    model = Cancels().double().eval()
    x = torch.tensor([[1.0, 1.0 - 1e-10]], dtype=torch.float64)
    match = (r"sample 0: Σ\|R\| = [0-9.e+]+ is [0-9.e+]+ times the explained score \|[0-9.e+-]+\|.*smallest "
             r"epsilon of the rules is 1e-09: raise epsilon")
    with pytest.warns(checks.RelevanceScaleWarning, match=match):
        seqlrp.explain(model, x, target=0, composite=seqlrp.EpsilonEverywhere(1e-9))
    with warnings.catch_warnings():
        warnings.simplefilter("error", checks.RelevanceScaleWarning)
        seqlrp.explain(model, x, target=0, composite=seqlrp.EpsilonEverywhere(1.0))  # stable: no warning
        seqlrp.explain(mlp(), X)


def test_text_relevance_far_above_the_score_warns_too():
    class Text(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(3, 2, dtype=torch.float64)
            self.head = Cancels()
            with torch.no_grad():
                rows = [[1.0, 1.0 - 1e-10], [1.0, 1.0], [0.0, 0.0]]
                self.embedding.weight.copy_(torch.tensor(rows, dtype=torch.float64))

        def forward(self, ids):
            return self.head(self.embedding(ids).sum(1))

    with pytest.warns(checks.RelevanceScaleWarning, match=r"epsilon of the rules is 1e-09"):
        seqlrp.explain_text(Text().double().eval(), torch.tensor([[0, 2]]), target=0, epsilon=1e-9)


class NeedsLengths(seqlrp.lstm.BiLSTMClassifier):
    def forward(self, ids, lengths):
        return super().forward(ids, lengths)


def test_a_forward_that_needs_lengths_names_lengths():
    torch.manual_seed(0)
    model = NeedsLengths(12, 5, 4, 3).double().eval()
    with pytest.raises(TypeError, match=r"NeedsLengths.forward needs lengths: pass lengths=\(B,\) true lengths "
                                        r"\(explain_text\(\.\.\., lengths=\.\.\.\); Attribution: "
                                        r"additional_forward_args=\(lengths,\)\)"):
        seqlrp.explain_text(model, IDS)
    with pytest.raises(TypeError, match=r"needs lengths"):
        seqlrp.Attribution(model).attribute(IDS)
    seqlrp.explain_text(model, IDS, lengths=torch.tensor([4, 4]))
