"""Text classifiers beyond last-state -> Linear (attention pooling, max pooling, Kim's CNN): complete coverage,
conservation, the gate branch without relevance, and every sentence explained as if it were alone."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.lstm import AttentionRNNClassifier, KimCNN, MaxPoolRNNClassifier

from ..core.helpers import untouched

MODELS = {
    "attention BiLSTM": lambda: AttentionRNNClassifier(20, 6, 5, 3),
    "attention GRU": lambda: AttentionRNNClassifier(20, 6, 5, 3, rnn="gru", bidirectional=False),
    "max-pool BiLSTM": lambda: MaxPoolRNNClassifier(20, 6, 5, 3),
    "max-pool BiGRU": lambda: MaxPoolRNNClassifier(20, 6, 5, 3, rnn="gru"),
    "Kim CNN": lambda: KimCNN(20, 6, 3, filters=4),
}
IDS = torch.tensor([[3, 5, 7, 9, 11, 2], [4, 6, 8, 0, 0, 0], [12, 13, 0, 0, 0, 0]])
LENGTHS = torch.tensor([6, 3, 2])


def make(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS[name]()
    with torch.no_grad():
        for parameter_name, p in model.named_parameters():
            if "embedding" not in parameter_name:
                p.normal_(0, 0.5)
    return model.double().eval()


@pytest.mark.parametrize("name", list(MODELS))
def test_covered_and_conserving(name):
    model = make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no CoverageWarning, no PaddingWarning
        with untouched(model):
            padded = seqlrp.explain_text(model, IDS, lengths=LENGTHS)
            # (bias_factor=1 spreads a convolution's bias share over every input of its window, padding tokens
            # too: conservation is checked on sentences of one length)
            result = seqlrp.explain_text(model, IDS[:, :2], lengths=torch.tensor([2, 2, 2]),
                                         composite=seqlrp.lstm.ArrasLSTM(epsilon=1e-9, bias_factor=1.0))
    assert padded.coverage.complete and result.coverage.complete
    assert bool((padded.token_relevance[LENGTHS[:, None] <= torch.arange(6)[None, :]] == 0).all())  # padding: 0
    logit = result.output.gather(1, result.target[:, None])[:, 0]
    total = result.token_relevance.sum(1) + result.initial_state_relevance
    torch.testing.assert_close(total, logit, rtol=1e-6, atol=1e-8)
    if name.startswith("attention"):
        rows = {row.name for row in padded.conservation()}
        assert "attention" not in rows and "score" not in rows  # the weights are a gate: no relevance there
        assert any("gate: softmax" in key for key in result.coverage.rules)


@pytest.mark.parametrize("name", list(MODELS))
def test_each_sentence_is_explained_as_if_it_were_alone(name):
    model = make(name)
    batch = seqlrp.explain_text(model, IDS, 1, lengths=LENGTHS)
    for row, length in enumerate(LENGTHS.tolist()):
        alone = seqlrp.explain_text(model, IDS[row:row + 1, :length], 1, lengths=LENGTHS[row:row + 1])
        torch.testing.assert_close(batch.token_relevance[row, :length], alone.token_relevance[0], rtol=1e-10,
                                   atol=1e-12)
        torch.testing.assert_close(batch.output[row], alone.output[0], rtol=1e-12, atol=1e-12)


def test_one_gate_rule_object_for_the_cells_and_the_models_gates():
    from seqlrp.lstm.recurrent import cell_rules
    from seqlrp.lstm.text import text_composite

    composite = text_composite(None, 1e-3, 0.0)
    assert composite[seqlrp.lstm.GATE_PRODUCT] is composite[seqlrp.core.Product]
    session = seqlrp.core.session.Session(seqlrp.EpsilonEverywhere())  # (no GATE_PRODUCT key: the Product rule)
    assert cell_rules(session, nn.LSTM(2, 2)).product is session.composite[seqlrp.core.Product]
