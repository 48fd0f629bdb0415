"""explain_text: bad inputs give clear errors or warnings; the model is never mutated; Arras I/O round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import seqlrp

from ..core.helpers import assert_unchanged, snapshot
from .models import make


@pytest.mark.parametrize("ids,lengths,error,match", [
    (torch.tensor([[1, 2, 3]]), torch.tensor([4]), ValueError, "lengths must be <= the padded length T=3"),
    (torch.tensor([[1, 2, 3], [1, 2, 3]]), torch.tensor([3, 0]), ValueError, "sequence 1 has length 0"),
    (torch.tensor([[1, -2, 3]]), None, ValueError, "negative id"),
    (torch.tensor([[1, 30, 3]]), None, ValueError, "id 30, but the embedding has only 30 rows"),
    (torch.tensor([[1.0, 2.0]]), None, TypeError, "integer ids"),
    (torch.tensor([[1, 2]]), torch.tensor([2.0]), ValueError, "lengths must be 1 integers"),
    ([[1, 2]], None, TypeError, "torch.Tensor"),
])
def test_bad_inputs_name_the_cause(ids, lengths, error, match):
    model = make("lstm")
    before = snapshot(model)
    with pytest.raises(error, match=match):
        seqlrp.explain_text(model, ids, lengths=lengths)
    assert_unchanged(model, before)


def test_lengths_for_a_model_without_lengths():
    model = make("pooled")
    with pytest.raises(TypeError, match="takes only token ids"):
        seqlrp.explain_text(model, torch.tensor([[1, 2]]), lengths=torch.tensor([2]))


class ReadsPadding(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.lstm = nn.LSTM(4, 3, batch_first=True)
        self.out = nn.Linear(3, 2)

    def forward(self, ids, lengths):  # ignores lengths: runs over the padding
        return self.out(self.lstm(self.embedding(ids))[1][0][0])


def test_model_that_reads_padding_is_warned_about():
    torch.manual_seed(0)
    with pytest.warns(seqlrp.CoverageWarning, match="padded positions received relevance"):
        seqlrp.explain_text(ReadsPadding().eval(), torch.tensor([[1, 2, 3, 0]]), lengths=torch.tensor([2]))


class MixesWithoutRule(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.lstm = nn.LSTM(4, 3, batch_first=True)
        self.out = nn.Linear(3, 2)

    def forward(self, ids):
        out, (h, c) = self.lstm(self.embedding(ids))
        return self.out(h[0] * c[0])  # a product of two signals: no rule


def test_op_without_rule_is_named():
    torch.manual_seed(0)
    with pytest.warns(seqlrp.CoverageWarning, match="MulBackward0"):
        result = seqlrp.explain_text(MixesWithoutRule().eval(), torch.tensor([[1, 2, 3]]))
    assert "MulBackward0" in result.coverage.unruled


def test_train_mode_with_dropout_refused_and_model_unchanged_after_explaining():
    model = make("lstm", layers=2)
    model.rnn.dropout = 0.3
    model.train()
    with pytest.raises(RuntimeError, match=r"training mode.*'rnn' \(LSTM\)"):
        seqlrp.explain_text(model, torch.tensor([[1, 2]]))
    model.eval()
    before = snapshot(model)
    seqlrp.explain_text(model, torch.tensor([[1, 2, 5]]), lengths=torch.tensor([3]), bias_factor=1.0)
    seqlrp.explain_text(model, torch.tensor([[1, 2, 5]]), fused=False)
    assert_unchanged(model, before)


def test_rnn_without_rule_is_refused():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(5, 3)
            self.rnn = nn.RNN(3, 2, batch_first=True)
            self.out = nn.Linear(2, 2)

        def forward(self, ids):
            return self.out(self.rnn(self.embedding(ids))[1][0])

    with pytest.raises(seqlrp.NoRuleError, match=r"'rnn' \(RNN\)"):
        seqlrp.explain_text(Plain().eval(), torch.tensor([[1, 2]]))


def test_arras_round_trip(tmp_path, reference_dir):
    model, vocab = seqlrp.lstm.load_arras(reference_dir / "synthetic_model.npz")
    path = tmp_path / "saved.npz"
    seqlrp.lstm.save_arras(model, path, vocab)
    again, vocab_again = seqlrp.lstm.load_arras(path)
    assert vocab_again == vocab
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    with np.load(path) as saved, np.load(reference_dir / "synthetic_model.npz") as original:
        for key in ("Wxh_Left", "Whh_Right", "bxh_Right", "Why_Left", "E"):
            np.testing.assert_array_equal(saved[key], original[key])


def test_arras_loader_rejects_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, W=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        seqlrp.lstm.load_arras(path)


def test_lstm_with_projection_is_refused_by_name():
    class Projected(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(5, 3)
            self.lstm = nn.LSTM(3, 4, proj_size=2, batch_first=True)
            self.out = nn.Linear(2, 2)

        def forward(self, ids):
            return self.out(self.lstm(self.embedding(ids))[1][0][0])

    with pytest.raises(seqlrp.NoRuleError, match=r"'lstm': an LSTM with proj_size=2"):
        seqlrp.explain_text(Projected().eval(), torch.tensor([[1, 2]]))
