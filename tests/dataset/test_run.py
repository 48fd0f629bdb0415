"""``seqlrp.explain_dataset``: the same numbers as explaining each example alone, in input order, for text and
images; the model untouched; the Parquet output readable by pyarrow, pandas and Hugging Face datasets; resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import seqlrp
from seqlrp.cli.text import lstm_rules
from seqlrp.dataset import IMAGE_SCHEMA, TEXT_SCHEMA, DatasetSource
from seqlrp.lstm import BiLSTMClassifier
from tests.core.helpers import untouched
from tests.dataset.helpers import WORDS, assert_same_dataset, read, sentences


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BiLSTMClassifier(len(WORDS), 8, 6, 3).eval()


@pytest.fixture(scope="module")
def ids():
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(0, 10, (90,), generator=gen)
    return [torch.randint(0, len(WORDS), (int(n),), generator=gen).tolist() for n in lengths]


def test_text_equals_each_sentence_alone_in_input_order(model, ids):
    with untouched(model):
        table = seqlrp.explain_dataset(model, DatasetSource(ids, vocabulary=WORDS), batch_size=7, shard_size=16)
    assert table.schema == TEXT_SCHEMA and table["id"].to_pylist() == list(range(len(ids)))
    for row, sentence in enumerate(ids):
        got = table.slice(row, 1).to_pylist()[0]
        assert got["tokens"] == [WORDS[i] for i in sentence]
        if not sentence:  # an empty row is kept, with nothing explained
            assert got["relevance"] == [] and got["predicted"] is None and got["relevance_sum"] is None
            continue
        alone = seqlrp.explain_text(model, torch.tensor([sentence]))
        assert np.allclose(got["relevance"], alone.token_relevance[0].numpy(), atol=1e-6, rtol=0)
        assert got["predicted"] == got["target"] == int(alone.output.argmax())
        assert got["logit"] == pytest.approx(float(alone.output[0, got["target"]]), abs=1e-6)
        assert got["relevance_sum"] == pytest.approx(sum(got["relevance"]), abs=1e-5)


def test_batch_size_shard_size_and_lengths_do_not_change_the_relevance(model, ids):
    a = seqlrp.explain_dataset(model, ids, batch_size=64, shard_size=4096)
    b = seqlrp.explain_dataset(model, ids, batch_size=3, shard_size=10)
    c = seqlrp.explain_dataset(model, DatasetSource(ids, lengths=True), batch_size=5, shard_size=30)
    assert_same_dataset(a, b)
    assert_same_dataset(a, c)


def test_token_strings_labels_and_target(model):
    rows = [(text.split(), label) for text, label in sentences(40)]
    vocabulary = {w: i for i, w in enumerate(WORDS)}
    table = seqlrp.explain_dataset(model, DatasetSource(rows, vocabulary=vocabulary), target=2, batch_size=8)
    assert table["label"].to_pylist() == [label for _, label in rows]
    assert set(table["target"].to_pylist()) == {2}
    assert table["tokens"].to_pylist() == [tokens for tokens, _ in rows]  # unknown words keep their text
    first = [vocabulary.get(w, 1) for w in rows[0][0]]
    alone = seqlrp.explain_text(model, torch.tensor([first]), 2)
    assert np.allclose(table["relevance"][0].as_py(), alone.token_relevance[0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match=r"word 'zzz' \(row \d+\) is not in the vocabulary and there is no "
                                         r"'<none>' token"):
        seqlrp.explain_dataset(model, DatasetSource(rows, vocabulary=vocabulary, unk="<none>"))


def test_dataset_of_id_tensors_with_labels(model, ids):
    data = torch.utils.data.StackDataset(torch.tensor([[2, 3, 4]] * 5), torch.arange(5))
    table = seqlrp.explain_dataset(model, data)
    assert table["label"].to_pylist() == [0, 1, 2, 3, 4] and table["tokens"][0].as_py() == ["2", "3", "4"]


class SmallCNN(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))


def test_images_equal_explain_with_float32_maps(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN().eval()
    images = [(torch.rand(3, 8, 8), i % 3) for i in range(10)]
    composite = seqlrp.cnn.EpsilonPlusFlat()
    with untouched(model):
        table = seqlrp.explain_dataset(model, images, composite=composite, batch_size=4, shard_size=6)
    assert table.schema == IMAGE_SCHEMA and table["label"].to_pylist() == [i % 3 for i in range(10)]
    alone = seqlrp.explain(model, torch.stack([x for x, _ in images]), None, seqlrp.cnn.EpsilonPlusFlat())
    maps = alone.relevance.sum(1)
    for row in range(10):
        got = table.slice(row, 1).to_pylist()[0]
        assert (got["height"], got["width"]) == (8, 8)
        assert np.allclose(np.asarray(got["relevance"], np.float32).reshape(8, 8), maps[row].numpy(),
                           atol=1e-6 * float(maps[row].abs().max()) + 1e-7)
        assert got["relevance_sum"] == pytest.approx(float(alone.relevance[row].sum()), abs=1e-5)


def test_image_folder_gives_paths(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
            tmp_path / name / "a.png")
    folder = torchvision.datasets.ImageFolder(tmp_path, transform=torchvision.transforms.ToTensor())
    table = seqlrp.explain_dataset(SmallCNN().eval(), folder)
    assert table["path"].to_pylist() == [str(tmp_path / "cat" / "a.png"), str(tmp_path / "dog" / "a.png")]
    assert table["label"].to_pylist() == [0, 1]


def test_parquet_output_is_read_by_pyarrow_pandas_and_datasets(tmp_path, model, ids):
    out = tmp_path / "out"
    summary = seqlrp.explain_dataset(model, DatasetSource(ids, vocabulary=WORDS), out=out, shard_size=25)
    assert summary.complete and summary.rows == summary.explained == len(ids) and summary.per_rank == [len(ids)]
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "_manifest.json"] + [
        f"part-0000{k}.parquet" for k in range(4)]
    table = read(out)
    assert_same_dataset(table, seqlrp.explain_dataset(model, DatasetSource(ids, vocabulary=WORDS)))
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(out).sort_values("id")
    assert frame["id"].tolist() == list(range(len(ids))) and list(frame["tokens"].iloc[0]) == table["tokens"][0].as_py()
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset("parquet", data_files=str(out / "part-*.parquet"), split="train",
                                   cache_dir=str(tmp_path / "hf"))
    assert sorted(loaded["id"]) == list(range(len(ids)))
    assert loaded.features["relevance"].feature.dtype == "float32"


def test_resume_explains_only_missing_shards_and_equals_a_full_run(tmp_path, model, ids):
    out = tmp_path / "out"
    seqlrp.explain_dataset(model, ids, out=out, shard_size=25)
    full = read(out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    (out / "part-00002.parquet").unlink()
    (out / "_SUCCESS").unlink()
    (out / ".part-00002.parquet.abc.part").write_bytes(b"half-written by a killed run")
    with untouched(model):
        summary = seqlrp.explain_dataset(model, ids, out=out, shard_size=25, batch_size=5)
    assert summary.explained == 25 and summary.complete and (out / "_SUCCESS").exists()
    assert not list(out.glob(".*"))  # the killed run's temporary is gone
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*") if p.name != "part-00002.parquet"} == {
        k: v for k, v in stamps.items() if k != "part-00002.parquet"}
    assert_same_dataset(read(out), full)
    again = seqlrp.explain_dataset(model, ids, out=out, shard_size=25)
    assert again.explained == 0 and again.complete


def test_another_run_in_the_same_out_is_refused_unless_overwrite(tmp_path, model, ids):
    out = tmp_path / "out"
    seqlrp.explain_dataset(model, ids, out=out, shard_size=25)
    with pytest.raises(ValueError, match=r"holds a dataset of another run \(the rule parameters changed "
                                         r"\(options.rules.epsilon: 0.001 there, 0.1 now\)\), whose rows are not"):
        seqlrp.explain_dataset(model, ids, lstm_rules(0.1, 0.0), out=out, shard_size=25)
    summary = seqlrp.explain_dataset(model, ids[:30], lstm_rules(0.1, 0.0), out=out, shard_size=25, overwrite=True)
    assert summary.complete and read(out).num_rows == 30
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.parquet", "part-00001.parquet"]


def test_progress_bar_counts_examples(model, ids, capsys):
    seqlrp.explain_dataset(model, ids, shard_size=25, progress=True)
    err = capsys.readouterr().err
    assert f"{len(ids)}/{len(ids)}" in err and "examples" in err
    seqlrp.explain_dataset(model, ids, shard_size=25, progress=False)
    assert capsys.readouterr().err == ""
