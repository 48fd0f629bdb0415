"""Properties over random models and rule parameters (hypothesis): finite relevance, the model untouched,
exact conservation where the rules promise it, determinism, and no dependence between batch samples."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import seqlrp

from ..core.helpers import untouched

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)


def _model(seed: int, width: int, conv: bool) -> nn.Module:
    torch.manual_seed(seed)
    if conv:
        return nn.Sequential(nn.Conv2d(2, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                             nn.Linear(width * 4, 3)).double().eval()
    return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 3)).double().eval()


def _inputs(seed: int, batch: int, conv: bool) -> torch.Tensor:
    shape = (batch, 2, 4, 4) if conv else (batch, 6)
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))


RULES = st.one_of(
    st.builds(lambda e, b: ("epsilon", {"epsilon": e, "bias_factor": b}), st.floats(0, 1), st.floats(0, 1)),
    st.builds(lambda g, e: ("gamma", {"gamma": g, "epsilon": e}), st.floats(0, 2), st.floats(1e-9, 1)),
    st.builds(lambda a: ("alpha_beta", {"alpha": a, "beta": a - 1}), st.floats(1, 3)),
    st.just(("zplus", {})), st.just(("wsquare", {})), st.just(("flat", {})), st.just(("zero", {})),
)


@SETTINGS
@given(seed=st.integers(0, 10_000), width=st.integers(1, 6), batch=st.integers(1, 4), conv=st.booleans(),
       rule=RULES, first=RULES)
def test_any_rule_gives_finite_relevance_and_leaves_the_model_untouched(seed, width, batch, conv, rule, first):
    model, x = _model(seed, width, conv), _inputs(seed, batch, conv)
    composite = {seqlrp.FIRST: first, seqlrp.groups.WEIGHTED: rule, seqlrp.groups.AVG_POOLS: "epsilon",
                 seqlrp.groups.ACTIVATIONS: "pass"}
    with untouched(model):
        result = seqlrp.explain(model, x, composite=composite)
    assert result.relevance.shape == x.shape and bool(torch.isfinite(result.relevance).all())
    again = seqlrp.explain(model, x, composite=composite)
    assert torch.equal(again.relevance, result.relevance)  # deterministic, bit for bit


@SETTINGS
@given(seed=st.integers(0, 10_000), width=st.integers(1, 6), batch=st.integers(2, 4), conv=st.booleans(),
       epsilon=st.floats(1e-6, 1.0))
def test_epsilon_with_bias_factor_one_conserves_the_target_logit(seed, width, batch, conv, epsilon):
    model, x = _model(seed, width, conv), _inputs(seed, batch, conv)
    result = seqlrp.explain(model, x, composite=seqlrp.EpsilonEverywhere(epsilon, bias_factor=1.0))
    logit = result.output.gather(1, result.target[:, None])[:, 0]
    scale = 1 + result.output.abs().max()
    torch.testing.assert_close(result.relevance_sum, logit, rtol=0, atol=1e-9 * float(scale))


@SETTINGS
@given(seed=st.integers(0, 10_000), width=st.integers(1, 6), batch=st.integers(2, 5), conv=st.booleans(),
       rule=RULES)
def test_each_sample_is_explained_as_if_it_were_alone(seed, width, batch, conv, rule):
    model, x = _model(seed, width, conv), _inputs(seed, batch, conv)
    composite = {seqlrp.groups.WEIGHTED: rule, seqlrp.groups.AVG_POOLS: "epsilon", seqlrp.groups.ACTIVATIONS: "pass"}
    together = seqlrp.explain(model, x, target=0, composite=composite).relevance
    for i in range(batch):
        alone = seqlrp.explain(model, x[i:i + 1], target=0, composite=composite).relevance
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(seed=st.integers(0, 10_000), lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       bias_factor=st.sampled_from([0.0, 1.0]))
def test_text_relevance_is_finite_and_each_sentence_independent_of_its_batch(seed, lengths, bias_factor):
    torch.manual_seed(seed)
    model = seqlrp.lstm.BiLSTMClassifier(9, 3, 2, 2, padding_idx=0).double().eval()
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(1, 9, (length,), generator=torch.Generator().manual_seed(seed + row))
    with untouched(model):
        batch = seqlrp.explain_text(model, ids, 1, lengths=torch.tensor(lengths), bias_factor=bias_factor)
    assert bool(torch.isfinite(batch.token_relevance).all())
    for row, length in enumerate(lengths):
        alone = seqlrp.explain_text(model, ids[row:row + 1, :length], 1, bias_factor=bias_factor)
        torch.testing.assert_close(batch.token_relevance[row, :length], alone.token_relevance[0], rtol=1e-9,
                                   atol=1e-12)
        assert bool((batch.token_relevance[row, length:] == 0).all())
