"""Issue 25: dataset inputs as users write them, and values that were silently changed.

- labels that are not integers (``positive``, ``1.0``, an integer beyond int64) were stored as null: they are
  kept, as strings; integer labels stay int64;
- a text that is not text (a JSON object, a bool) became its Python repr: refused, naming the row;
- image relevance stored as float16 overflowed to inf above 65504: float32;
- CSV/TSV with a line break in a quoted field (joined into one token), CR-only line ends (one merged row or an
  internal error), a field over 131,072 characters (an internal error): read as written;
- ``limit=2.5`` and a row mixing token ids and words: one clear error.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.cli import main
from seqlrp.dataset import DatasetSource, TextFile
from seqlrp.dataset.readers import READERS, LinesReader
from seqlrp.lstm import BiLSTMClassifier
from tests.dataset.helpers import WORDS, make_text_files, read, text_args


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BiLSTMClassifier(len(WORDS), 4, 3, 2).eval()


def test_non_integer_labels_are_kept_as_strings(tmp_path, model):
    (tmp_path / "in.tsv").write_text("sentence\tlabel\ngood film\tpositive\nbad film\t1.0\nthe plot\t\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": "good", "label": v}) + "\n"
                                               for v in ("positive", 1.0, 2**70, None)))
    assert [label for _, label in TextFile(tmp_path / "in.tsv").handles()] == ["positive", "1.0", None]
    assert [label for _, label in TextFile(tmp_path / "in.jsonl").handles()] == ["positive", "1.0", str(2**70), None]
    source = TextFile(tmp_path / "in.tsv", vocabulary=WORDS)
    table = seqlrp.explain_dataset(model, source)
    assert table.schema.field("label").type == pa.string()
    assert table["label"].to_pylist() == ["positive", "1.0", None]
    summary = seqlrp.explain_dataset(model, source, out=tmp_path / "out", shard_size=1)  # (one label type per run)
    assert summary.complete and read(tmp_path / "out")["label"].to_pylist() == ["positive", "1.0", None]
    (tmp_path / "ints.tsv").write_text("sentence\tlabel\ngood film\t1\nbad film\t-2\n")
    table = seqlrp.explain_dataset(model, TextFile(tmp_path / "ints.tsv", vocabulary=WORDS))
    assert table.schema.field("label").type == pa.int64() and table["label"].to_pylist() == [1, -2]


def test_cli_integer_label_beyond_int64_is_kept(tmp_path, capsys):
    files = make_text_files(tmp_path, count=3)
    (files / "input.tsv").write_text(f"sentence\tlabel\ngood film\t{2**64}\nbad\t0\n")
    assert main(text_args(files, tmp_path / "out")) == 0, capsys.readouterr().err
    assert read(tmp_path / "out")["label"].to_pylist() == [str(2**64), "0"]


@pytest.mark.parametrize("value,kind", [({"a": 1}, "dict"), (True, "bool"), (3, "int"), (["good", 2], "list")])
def test_text_that_is_not_text_is_refused_naming_the_row(tmp_path, value, kind):
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "good"}) + "\n" + json.dumps({"text": value}) + "\n")
    with pytest.raises(ValueError, match=rf"line 2 of .*in.jsonl: the text is a {kind}.*not a string or a list of "
                                         r"strings"):
        list(TextFile(tmp_path / "in.jsonl").handles())


def test_image_relevance_above_float16_range_is_stored_finite(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval()
    with torch.no_grad():
        model[1].weight.fill_(1e5)
        model[1].bias.zero_()
    images = [torch.ones(3, 2, 2)]
    table = seqlrp.explain_dataset(model, images, seqlrp.ZeroEverywhere())
    maps = np.asarray(table["relevance"].to_pylist()[0])
    expected = seqlrp.explain(model, torch.stack(images), None, seqlrp.ZeroEverywhere()).relevance.sum(1).reshape(-1)
    assert np.isfinite(maps).all() and maps.max() > 65504
    assert np.allclose(maps, expected.numpy(), rtol=1e-6)


def test_csv_and_tsv_quoted_line_breaks_and_quotes(tmp_path):
    (tmp_path / "in.csv").write_text('text,label\n"good\nfilm",1\n"a ""great"", plot",0\nbad,1\n')
    (tmp_path / "in.tsv").write_text('sentence\tlabel\n"good\nfilm"\t1\nbad\t0\n')
    assert list(TextFile(tmp_path / "in.csv").handles()) == [(["good", "film"], 1), (['a', '"great",', 'plot'], 0),
                                                             (["bad"], 1)]
    assert list(TextFile(tmp_path / "in.tsv").handles()) == [(["good", "film"], 1), (["bad"], 0)]


@pytest.mark.parametrize("suffix,text", [(".csv", "text,label\rgood film,1\rbad,0\r"),
                                         (".tsv", "sentence\tlabel\rgood film\t1\rbad\t0\r"),
                                         (".txt", "good film\rbad\r"), (".jsonl", '{"text": "good film", "label": 1}\r'
                                                                                  '{"text": "bad", "label": 0}\r')])
def test_cr_only_line_ends(tmp_path, suffix, text):
    (tmp_path / f"in{suffix}").write_bytes(text.encode())
    rows = list(TextFile(tmp_path / f"in{suffix}").handles())
    assert [tokens for tokens, _ in rows] == [["good", "film"], ["bad"]]


def test_cli_cr_only_csv_and_a_field_over_the_csv_limit(tmp_path, capsys):
    files = make_text_files(tmp_path, count=3)
    long = " ".join(["good"] * 40000)  # 199,999 characters: over Python's csv field limit of 131,072
    (files / "in.csv").write_bytes(f"text,label\r{long},1\rbad film,0\r".encode())
    args = text_args(files, tmp_path / "out")
    args[args.index("--input") + 1] = str(files / "in.csv")
    assert main(args) == 0, capsys.readouterr().err
    assert [len(t) for t in read(tmp_path / "out")["tokens"].to_pylist()] == [40000, 2]


def test_limit_must_be_a_whole_number():
    with pytest.raises(ValueError, match=r"limit must be a positive whole number of rows, got 2.5"):
        seqlrp.explain_dataset(BiLSTMClassifier(len(WORDS), 4, 3, 2).eval(), [[1, 2]] * 3, limit=2.5)


def test_a_row_mixing_ids_and_words_is_refused(model):
    with pytest.raises(ValueError, match=r"text item 1 mixes token ids and words"):
        seqlrp.explain_dataset(model, DatasetSource([["good"], ["good", 3]], vocabulary=WORDS))
    with pytest.raises(ValueError, match=r"text item 0 mixes token ids and words"):
        seqlrp.explain_dataset(model, DatasetSource([[3, "good"]], vocabulary=WORDS))


def test_a_new_format_is_one_reader_keyed_by_suffix(tmp_path, monkeypatch):
    monkeypatch.setitem(READERS, ".lines", LinesReader)
    (tmp_path / "in.lines").write_text("good film\nbad\n")
    assert list(TextFile(tmp_path / "in.lines").handles()) == [(["good", "film"], None), (["bad"], None)]


def test_library_messages_name_keywords_not_cli_flags(tmp_path):
    (tmp_path / "in.tsv").write_text("sentence\tlabel\ngood\t1\n")
    with pytest.raises(ValueError) as raised:
        TextFile(tmp_path / "in.tsv", text_column="review")
    assert "text_column='review'" in str(raised.value) and "--" not in str(raised.value)
    import ast
    from pathlib import Path

    import seqlrp.dataset

    for path in Path(seqlrp.dataset.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for part in ast.walk(node.exc):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        assert not re.search(r"--[a-z]", part.value), f"{path.name}: {part.value!r}"


def test_old_keywords_warn_and_give_the_same_rows(model):
    rows = [["good", "film"], ["bad"]]
    with pytest.warns(DeprecationWarning, match=r"vocabulary= -> the source's"):
        old = seqlrp.explain_dataset(model, rows, vocabulary=WORDS)
    new = seqlrp.explain_dataset(model, DatasetSource(rows, vocabulary=WORDS))
    assert old.equals(new)
    with pytest.warns(DeprecationWarning, match=r"epsilon= -> composite="):
        seqlrp.explain_dataset(model, DatasetSource(rows, vocabulary=WORDS), epsilon=0.1)
