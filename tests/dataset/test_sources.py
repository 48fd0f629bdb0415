"""Every input format gives the same rows, in input order, streamed chunk by chunk."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from seqlrp.dataset import DatasetSource, ImageFolderSource, TextFile

ROWS = [("a good film", 1), ("bad , awful", 0), ("the <script> plot", 1), ("", 0), ("great", 1)]


def write_all(folder):
    """The rows as .txt, .tsv, .csv, .jsonl and .parquet (string and list columns)."""
    (folder / "in.txt").write_text("".join(f"{t}\n" for t, _ in ROWS if t) + "\n")  # blank lines are not rows
    (folder / "in.tsv").write_text("label\tsentence\n" + "".join(f"{y}\t{t}\n" for t, y in ROWS))
    with open(folder / "in.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "text", "label"])
        writer.writerows([i, t, y] for i, (t, y) in enumerate(ROWS))
    (folder / "in.jsonl").write_text("".join(json.dumps({"body": t, "label": y}) + "\n" for t, y in ROWS))
    pq.write_table(pa.table({"text": [t for t, _ in ROWS], "label": [y for _, y in ROWS]}), folder / "in.parquet",
                   row_group_size=2)
    pq.write_table(pa.table({"words": [t.split() for t, _ in ROWS]}), folder / "words.parquet")


def test_every_format_gives_the_same_rows(tmp_path):
    write_all(tmp_path)
    expected = [(t.split(), y) for t, y in ROWS]
    assert list(TextFile(tmp_path / "in.tsv").handles()) == expected
    assert list(TextFile(tmp_path / "in.csv").handles()) == expected
    assert list(TextFile(tmp_path / "in.jsonl", text_column="body").handles()) == expected
    assert list(TextFile(tmp_path / "in.parquet").handles()) == expected
    assert list(TextFile(tmp_path / "words.parquet", text_column="words").handles()) == [(t, None) for t, _ in
                                                                                         expected]
    assert list(TextFile(tmp_path / "in.txt").handles()) == [(t, None) for t, _ in expected if t]
    source = TextFile(tmp_path / "in.tsv", limit=3)
    assert len(source) == 3 and [len(c) for c in source.chunks(2)] == [2, 1]
    assert TextFile(tmp_path / "in.tsv").describe()["text_column"] == "sentence"


def test_text_files_are_streamed(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("".join(f"row {i}\n" for i in range(20000)))
    chunks = TextFile(path).chunks(100)
    first = next(chunks)
    assert first[0] == (["row", "0"], None) and len(first) == 100
    assert next(chunks)[0] == (["row", "100"], None)
    assert len(TextFile(path)) == 20000


def test_dataset_source_kinds_labels_and_paths(tmp_path):
    ids = DatasetSource([torch.tensor([1, 2]), (torch.tensor([3]), torch.tensor(1))])
    assert ids.kind == "text" and ids.load([0, 1]) == [([1, 2], None), ([3], 1)]
    images = DatasetSource([(torch.rand(3, 4, 4), 2)] * 3, limit=2)
    assert images.kind == "image" and len(images) == 2 and images.load([1])[0][1:] == (2, None)
    with pytest.raises(ValueError, match="data is empty"):
        DatasetSource([])
    with pytest.raises(TypeError, match="data must be a sequence or a map-style torch Dataset"):
        DatasetSource(iter([1]))


def test_image_folder_source(tmp_path):
    for name, color in (("cat", 10), ("dog", 200)):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((6, 6, 3), color + i, np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    source = ImageFolderSource(tmp_path, lambda p: torch.from_numpy(np.array(Image.open(p))).float(), (".png",))
    assert source.class_names == ["cat", "dog"] and len(source) == 4
    rows = source.load(next(source.chunks(10)))
    assert [(label, path) for _, label, path in rows] == [(0, "cat/0.png"), (0, "cat/1.png"), (1, "dog/0.png"),
                                                          (1, "dog/1.png")]
    assert float(rows[3][0][0, 0, 0]) == 201
