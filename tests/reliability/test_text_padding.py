"""A sentence's explanation never depends on the other sentences of its batch or file."""

from __future__ import annotations

import inspect
import re
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqlrp
from seqlrp.cli import main
from seqlrp.lstm import PaddingWarning

from .models import text_model

PADDED = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])


def test_padded_batch_without_lengths_warns():
    model = text_model(padding_idx=0)
    with pytest.warns(PaddingWarning, match=r"1 sequence\(s\) \(e.g. row 1\) end in padding tokens \(padding_idx=0\) "
                                            r"and no lengths were passed.*Pass lengths="):
        seqlrp.explain_text(model, PADDED)


@pytest.mark.parametrize("case", ["lengths passed", "no padding", "no padding_idx", "model packs itself"])
def test_no_padding_warning_where_no_padding_is_read(case):
    class PacksItself(seqlrp.lstm.BiLSTMClassifier):
        def forward(self, ids, lengths=None):
            return super().forward(ids, (ids != 0).sum(1))

    model = text_model(cls=PacksItself if case == "model packs itself" else seqlrp.lstm.BiLSTMClassifier,
                       padding_idx=None if case == "no padding_idx" else 0)
    ids = PADDED[:1] if case == "no padding" else PADDED
    lengths = torch.tensor([4, 2]) if case == "lengths passed" else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", PaddingWarning)
        seqlrp.explain_text(model, ids, lengths=lengths)


def test_a_sentence_alone_equals_the_same_sentence_in_a_padded_batch_with_lengths():
    model = text_model(padding_idx=0)
    alone = seqlrp.explain_text(model, PADDED[1:, :2])
    batch = seqlrp.explain_text(model, PADDED, lengths=torch.tensor([4, 2]))
    torch.testing.assert_close(batch.token_relevance[1, :2], alone.token_relevance[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(batch.output[1], alone.output[0], rtol=1e-12, atol=1e-12)


class Unpacked(nn.Module):
    """Reads every position, padding included, when no lengths are given (the CLI's problem case)."""

    def __init__(self, vocab_size=8, embedding_dim=4, hidden_size=3, num_classes=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, ids, lengths=None):
        x = self.embedding(ids)
        if lengths is not None:
            x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(x)
        return self.classifier(h[-1])


def _example(html: str, words: list[str]) -> tuple[list[str], str]:
    """Token values and the probability of the example whose tokens are ``words``."""
    for block in html.split('<div class="example"')[1:]:
        tokens = re.findall(r'title="([^"]+)"><span class="word">([^<]*)</span>', block)
        if [t for _, t in tokens] == words:
            return [v for v, _ in tokens], re.search(r"\(p = ([0-9.]+)\)", block).group(1)
    raise AssertionError(f"no example with tokens {words}")


@pytest.mark.parametrize("lengths", [False, True], ids=["model(ids)", "model(ids, lengths)"])
def test_cli_line_does_not_depend_on_the_other_lines(tmp_path, lengths):
    torch.manual_seed(0)
    torch.save(Unpacked().state_dict(), tmp_path / "model.pt")
    (tmp_path / "vocab.txt").write_text("<pad>\n<unk>\ngreat\nmovie\nthe\nworst\nfilm\never\n")
    (tmp_path / "alone.txt").write_text("great movie\n")
    (tmp_path / "three.txt").write_text("the worst film ever made\ngreat movie\nthe film\n")
    imports = "from torch import nn\nfrom torch.nn.utils.rnn import pack_padded_sequence\n\n"
    (tmp_path / "mymodels.py").write_text(imports + inspect.getsource(Unpacked))  # (a --model-class file.py:Class)
    reports = {}
    for name in ("alone", "three"):
        argv = ["explain-text", "--model", str(tmp_path / "model.pt"), "--model-class",
                f"{tmp_path / 'mymodels.py'}:Unpacked", "--vocab", str(tmp_path / "vocab.txt"), "--input",
                str(tmp_path / f"{name}.txt"), "--out", str(tmp_path / f"{name}.html")]
        assert main(argv + (["--lengths"] if lengths else [])) == 0
        reports[name] = _example((tmp_path / f"{name}.html").read_text(), ["great", "movie"])
    assert reports["alone"] == reports["three"]
