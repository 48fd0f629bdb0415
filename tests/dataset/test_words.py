"""A Hugging Face model's dataset (a source with ``tokenizer=``; ``seqlrp explain-dataset --hf-model DIR``): one row
per text with its words, their relevance, the special flags, the tokens and the embedding shares, each row that of the
text explained alone; the run's identity covers the tokenizer and the configuration; ``report-dataset`` word by word;
every bad combination of options refused with one line."""

from __future__ import annotations

import subprocess
import sys

import html5lib
import numpy as np
import pyarrow.parquet as pq
import pytest

import seqlrp
from seqlrp.cli import main
from seqlrp.dataset import WORDS_SCHEMA, DatasetSource, TextFile
from seqlrp.transformers import CPLRP, AttnLRP

from ..transformers.tiny import VOCABULARY, save_tiny, tiny, tiny_tokenizer
from .helpers import ROOT, read, subprocess_env

transformers = pytest.importorskip("transformers")

TEXTS = ["a wonderful movie, unforgettable!", "bad", "", "the plot drags but the actors shine", "great", "not good",
         "very bad", "good"]
LABELS = [1, 0, 0, 2, 1, 0, 0, 1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    save_tiny(root / "bert", "bert")
    (root / "input.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in
                                                            zip(TEXTS, LABELS, strict=True)), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_each_row_is_the_text_explained_alone(tokenizer):
    model = tiny("bert")
    table = seqlrp.explain_dataset(model, DatasetSource(list(zip(TEXTS, LABELS, strict=True)), tokenizer=tokenizer),
                                   CPLRP(), batch_size=2, shard_size=5)
    assert table.schema.names == WORDS_SCHEMA.names and table["id"].to_pylist() == list(range(len(TEXTS)))
    for row, text, label in zip(table.to_pylist(), TEXTS, LABELS, strict=True):
        assert row["text"] == text and row["label"] == label
        if not text:  # (nothing to explain: null results, empty lists)
            assert row["words"] == [] and row["logit"] is None
            continue
        alone = seqlrp.explain_text(model, tokenizer([text], return_tensors="pt"), composite=CPLRP(),
                                    tokenizer=tokenizer)
        words = alone.words[0]
        assert row["words"] == [w.text for w in words] and row["special"] == [w.special for w in words]
        scale = float(alone.relevance.abs().max())
        assert np.allclose(row["relevance"], [w.relevance for w in words], rtol=1e-6, atol=1e-7 * scale)
        assert row["tokens"] == alone.tokens[0]
        assert np.allclose(row["token_relevance"], alone.relevance[0].tolist(), rtol=1e-6, atol=1e-7 * scale)
        assert [row["words"][w] for w in row["token_word"]][0] == "[CLS]"
        for w, word in enumerate(words):  # (each word's pieces point back to it)
            assert [p for p, index in enumerate(row["token_word"]) if index == w] == list(word.positions)
        assert row["relevance_sum"] == pytest.approx(float(alone.relevance.sum()), rel=1e-12, abs=1e-15)
        assert row["target"] == int(alone.target)
        assert row["logit"] == pytest.approx(float(alone.output[0, row["target"]]))
        shares = {s["name"]: s["relevance"] for s in row["embedding_shares"]}
        assert shares == {name: pytest.approx(float(v.sum()), rel=1e-12, abs=1e-15)
                          for name, v in alone.embedding_shares.items()}
        assert row["parameter_relevance"] == []


def test_sources_refuse_token_ids_and_lstm_settings(tokenizer, tmp_path):
    (tmp_path / "in.txt").write_text("good\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokenizer= \(a Hugging Face model's\) reads the texts itself; vocabulary=, "
                                         r"lengths=True are for a model on token ids"):
        TextFile(tmp_path / "in.txt", vocabulary=["good"], lengths=True, tokenizer=tokenizer)
    with pytest.raises(TypeError, match=r"text item 0 must be a text .* \(token ids: leave tokenizer= out"):
        seqlrp.explain_dataset(tiny("bert"), DatasetSource([[1, 2, 3]], tokenizer=tokenizer))
    with pytest.raises(ValueError, match="epsilon= are LSTM options"):
        with pytest.warns(DeprecationWarning):
            seqlrp.explain_dataset(tiny("bert"), DatasetSource(["good"], tokenizer=tokenizer), epsilon=0.1)


def command(saved, out, *extra):
    return ["explain-dataset", "--input", str(saved / "input.tsv"), "--hf-model", str(saved / "bert"), "--out",
            str(out), "--shard-size", "3", "--batch-size", "2", *extra]


def test_the_command_resumes_its_own_run_and_refuses_another_tokenizer_or_configuration(saved, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(command(saved, out)) == 0
    first = read(out)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(saved / "bert").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(saved / "bert")
    library = seqlrp.explain_dataset(model, TextFile(saved / "input.tsv", tokenizer=tokenizer), AttnLRP(),
                                     batch_size=2, shard_size=3)
    assert first["words"].to_pylist() == library["words"].to_pylist()
    assert first["relevance"].to_pylist() == library["relevance"].to_pylist()
    (out / "part-00001.parquet").unlink()  # (interrupted: the same command completes it)
    assert main(command(saved, out)) == 0
    assert read(out).equals(first)
    assert "0 text(s) truncated" in capsys.readouterr().err
    edited = tmp_path / "edited"  # (the same weights, a tokenizer of the same size with "good" <-> "bad": another run)
    save_tiny(edited)
    good, bad = VOCABULARY.index("good"), VOCABULARY.index("bad")
    swapped = list(VOCABULARY)
    swapped[good], swapped[bad] = swapped[bad], swapped[good]
    tiny_tokenizer(edited, swapped)
    capsys.readouterr()
    assert main(command(saved, out)[:4] + [str(edited)] + command(saved, out)[5:]) == 3
    assert "the tokenizer changed (options.tokenizer: " in capsys.readouterr().err
    save_tiny(edited)
    config = transformers.AutoConfig.from_pretrained(edited)
    config.layer_norm_eps = 1e-5
    config.save_pretrained(edited)
    capsys.readouterr()
    assert main(command(saved, out)[:4] + [str(edited)] + command(saved, out)[5:]) == 3
    assert "the model's configuration changed (model.config." in capsys.readouterr().err
    assert main(command(saved, out, "--composite", "cplrp")) == 3
    assert "the rule preset (--composite) changed (composite: 'attnlrp' there, 'cplrp' now)" in capsys.readouterr().err


def test_two_workers_write_what_one_process_writes(saved, tmp_path):
    """``--hf-model`` with ``--workers 2`` (two local processes, each loading the folder): the same rows as one."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(command(saved, one)) == 0
    result = subprocess.run([sys.executable, "-m", "seqlrp", *command(saved, two, "--workers", "2")], cwd=ROOT,
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote") == 1
    first, second = read(one), read(two)
    assert second.num_rows == len(TEXTS)
    for column in ("words", "special", "tokens", "token_word"):
        assert second[column].to_pylist() == first[column].to_pylist()
    for column in ("relevance", "token_relevance"):
        for a, b in zip(second[column].to_pylist(), first[column].to_pylist(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_report_dataset_reads_words(saved, tmp_path):
    out = tmp_path / "out"
    assert main(command(saved, out)) == 0
    assert pq.read_schema(sorted(out.glob("part-*.parquet"))[0]).names == WORDS_SCHEMA.names
    assert main(["report-dataset", str(out), "--out", str(tmp_path / "r.html"), "--min-count", "1"]) == 0
    page = html5lib.parse((tmp_path / "r.html").read_text(encoding="utf-8"), namespaceHTMLElements=False)
    titles = [h.text for h in page.iter("h2")]
    assert "Special tokens (left out of the word tables)" in titles
    assert any(t.endswith("words with the highest mean relevance (at least 1 occurrences)") for t in titles)
    words = {td.text for td in page.iter("td")}
    assert "[CLS]" in words and "bert.embeddings.position_embeddings" in words
    ranked = [row.findall("td")[1].text for row in page.iter("tr") if len(row.findall("td")) == 5]
    assert ranked and "[CLS]" not in ranked and "[SEP]" not in ranked  # (special tokens: their own table)
    grey = [s for s in page.iter("span") if s.get("class") in ("token special", "token special focus")]
    assert grey and all(s.find("span[@class='word']").text in ("[CLS]", "[SEP]") for s in grey)
    assert "Grey tokens" in "".join(page.find(".//details[@class='help']").itertext())


def test_bad_combinations_are_one_clear_error(saved, tmp_path, capsys):
    cases = [
        (["--vocab", "v.txt", "--unk", "[UNK]"], "--hf-model takes the model, its tokenizer and its configuration from "
                                                 "the folder; --vocab, --unk are options of --model"),
        (["--composite", "epsilon_plus_flat"], "--composite epsilon_plus_flat is an image preset; --hf-model takes "
                                               "one of attnlrp, cplrp, recurrentlrp, mambalrp"),
    ]
    for extra, message in cases:
        assert main(command(saved, tmp_path / "out", *extra)) == 3
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0]
    images = ["explain-dataset", "--images", str(tmp_path), "--hf-model", str(saved / "bert"), "--out",
              str(tmp_path / "o")]
    assert main(images) == 3
    assert "--hf-model explains text (--input FILE)" in capsys.readouterr().err
    assert main(["explain-dataset", "--images", str(tmp_path), "--arch", "resnet18", "--weights", "w.pth",
                 "--composite", "cplrp", "--out", str(tmp_path / "o")]) == 3
    assert "--composite cplrp is a transformer preset (--hf-model)" in capsys.readouterr().err
    assert main(["explain-dataset", "--input", str(saved / "input.tsv"), "--model", "m.pt", "--model-class", "a:B",
                 "--vocab", "v.txt", "--composite", "attnlrp", "--out", str(tmp_path / "o")]) == 3
    assert "--composite attnlrp is a preset of --images or --hf-model" in capsys.readouterr().err


def test_a_row_equals_its_text_alone_with_a_decoder(tmp_path):
    model, tokenizer = tiny("gpt2"), tiny_tokenizer(tmp_path, token_types=False)
    table = seqlrp.explain_dataset(model, DatasetSource(["bad film", "good film", "the plot"], tokenizer=tokenizer),
                                   batch_size=8)
    for row in table.to_pylist():
        alone = seqlrp.explain_text(model, tokenizer([row["text"]], return_tensors="pt"), tokenizer=tokenizer)
        assert np.allclose(row["relevance"], [w.relevance for w in alone.words[0]], rtol=1e-6,
                           atol=1e-7 * float(alone.relevance.abs().max()))
        assert row["logit"] == pytest.approx(float(alone.output[0, row["target"]]), rel=1e-12)
