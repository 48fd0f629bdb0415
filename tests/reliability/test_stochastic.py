"""Stochastic forwards are refused with the op and the fix; deterministic ones are not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seqlrp
from seqlrp.core.stochastic import StochasticForwardError

from ..core.helpers import untouched
from .models import text_model


class Functional(nn.Module):
    """A linear model whose forward calls ``random(self, x)`` first."""

    def __init__(self, random):
        super().__init__()
        self.fc, self.random = nn.Linear(4, 3), random

    def forward(self, x):
        return self.fc(self.random(self, x))


GENERATOR = torch.Generator().manual_seed(0)
RANDOM = {
    "F.dropout(training=True)": (lambda m, x: F.dropout(x, 0.5, training=True), "bernoulli"),
    "F.alpha_dropout(training=True)": (lambda m, x: F.alpha_dropout(x, 0.5, training=True), "bernoulli"),
    "F.rrelu(training=True)": (lambda m, x: F.rrelu(x, training=True), "rrelu_with_noise"),
    "torch.bernoulli": (lambda m, x: x * torch.bernoulli(torch.full_like(x, 0.5)), "bernoulli"),
    "torch.rand": (lambda m, x: x + torch.rand(x.shape, dtype=x.dtype), "rand"),
    "randn_like": (lambda m, x: x + 0.1 * torch.randn_like(x), "randn"),
    "explicit generator": (lambda m, x: x * torch.bernoulli(torch.full_like(x, 0.5), generator=GENERATOR),
                           "bernoulli"),
    "noise module flag": (lambda m, x: x + (torch.randn_like(x) if m.training else 0), "randn"),
    "sdpa dropout": (lambda m, x: F.scaled_dot_product_attention(x[:, None, None], x[:, None, None],
                                                                 x[:, None, None], dropout_p=0.3)[:, 0, 0],
                     "bernoulli"),
}


@pytest.mark.parametrize("case", list(RANDOM))
def test_random_ops_in_the_forward_are_refused_naming_the_op(case):
    random, op = RANDOM[case]
    model = Functional(random).double()  # (training mode: no module known to depend on it)
    x = torch.randn(2, 4, dtype=torch.float64)
    for explainer in (seqlrp.explain, seqlrp.baselines.gradient):
        with untouched(model), pytest.raises(StochasticForwardError, match=rf"called {op}.*model\.eval\(\)"):
            explainer(model, x)


@pytest.mark.parametrize("module,name", [
    (nn.RReLU(), "RReLU"),
    (nn.MultiheadAttention(4, 2, dropout=0.5, batch_first=True), "MultiheadAttention"),
    (nn.Dropout(0.1), "Dropout"),
])
def test_modules_random_in_training_are_refused_before_the_forward(module, name):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.fc = module, nn.Linear(4, 3)

        def forward(self, x):
            h = self.inner(x[:, None], x[:, None], x[:, None])[0][:, 0] if name == "MultiheadAttention" \
                else self.inner(x)
            return self.fc(h)

    model = Net().eval()
    model.inner.train()  # the model looks evaluated, one module is not
    with untouched(model), pytest.raises(RuntimeError, match=rf"training mode.*'inner' \({name}\).*model\.eval\(\)"):
        seqlrp.explain(model, torch.randn(2, 4))


def test_stochastic_text_model_is_refused():
    model = text_model()
    model.classifier = nn.Sequential(nn.Dropout(0.3), model.classifier)
    model.classifier.train()
    with untouched(model), pytest.raises(RuntimeError, match=r"'classifier.0' \(Dropout\)"):
        seqlrp.explain_text(model, torch.tensor([[1, 2, 3]]))

    class FunctionalDropout(seqlrp.lstm.BiLSTMClassifier):
        def forward(self, ids, lengths=None):
            x = F.dropout(self.embedding(ids), 0.2, training=True)
            _, (h, _) = self.lstm(x)
            return self.classifier(torch.cat([h[-2], h[-1]], -1))

    torch.manual_seed(0)
    model = FunctionalDropout(12, 5, 4, 3).double().eval()
    with untouched(model), pytest.raises(StochasticForwardError, match="called bernoulli"):
        seqlrp.explain_text(model, torch.tensor([[1, 2, 3]]))


@pytest.mark.filterwarnings("ignore::seqlrp.CoverageWarning")  # (rrelu / attention take the gradient route)
@pytest.mark.parametrize("case", ["dropout p=0", "dropout eval", "rrelu eval", "sdpa p=0"])
def test_deterministic_uses_of_random_ops_are_accepted(case):
    random = {
        "dropout p=0": lambda m, x: F.dropout(x, 0.0, training=True),
        "dropout eval": lambda m, x: F.dropout(x, 0.5, training=False),
        "rrelu eval": lambda m, x: F.rrelu(x, training=False),
        "sdpa p=0": lambda m, x: F.scaled_dot_product_attention(x[:, None, None], x[:, None, None],
                                                                x[:, None, None])[:, 0, 0],
    }[case]
    model = Functional(random).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    first, second = seqlrp.explain(model, x), seqlrp.explain(model, x)
    torch.testing.assert_close(first.relevance, second.relevance, rtol=0, atol=0)


class _NoisyConv(nn.Conv2d):
    """A subclass of a layer class that has a rule: its own forward draws random numbers."""

    def forward(self, x):
        return super().forward(x) + 0.1 * torch.randn_like(x[:, :1, 1:-1, 1:-1])


class _NoisyLinear(nn.Linear):
    def forward(self, x):
        return F.dropout(super().forward(x), 0.5, training=True)


@pytest.mark.parametrize("layer,op", [(_NoisyConv(2, 3, 3), "randn"), (_NoisyLinear(3 * 4 * 4, 2), "bernoulli")])
def test_random_forwards_of_subclasses_of_ruled_layers_are_refused(layer, op):
    """Exact deterministic classes run their forward without the watch (speed); a subclass is still watched."""
    head = [nn.Flatten(), nn.Linear(3 * 4 * 4, 2)] if isinstance(layer, nn.Conv2d) else []
    body = [layer] if isinstance(layer, nn.Conv2d) else [nn.Conv2d(2, 3, 3), nn.Flatten(), layer]
    model = nn.Sequential(*body, *head).eval()
    x = torch.randn(2, 2, 6, 6)
    composite = seqlrp.Composite({nn.Conv2d: "epsilon", nn.Linear: "epsilon"})
    with untouched(model), pytest.raises(StochasticForwardError, match=rf"called {op}"):
        seqlrp.explain(model, x, composite=composite)
