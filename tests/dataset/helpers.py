"""Small files for the dataset tests: a vocabulary, a BiLSTM state_dict, a 500-line TSV; reading outputs back."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import torch

from seqlrp.lstm import BiLSTMClassifier

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["<pad>", "<unk>", "good", "bad", "film", "the", "great", "awful", "<script>", "plot"]
BILSTM = ["--model-class", "seqlrp.lstm:BiLSTMClassifier", "--model-arg", f"vocab_size={len(WORDS)}",
          "--model-arg", "embedding_dim=8", "--model-arg", "hidden_size=6", "--model-arg", "num_classes=2"]


class SlowBiLSTM(BiLSTMClassifier):
    """The BiLSTM, sleeping ``SLOW_FORWARD_SECONDS`` per forward: a run long enough to be killed half-way."""

    def forward(self, token_ids, lengths=None):
        time.sleep(float(os.environ.get("SLOW_FORWARD_SECONDS", "0")))
        return super().forward(token_ids, lengths)


def sentences(count: int, seed: int = 0) -> list[tuple[str, int]]:
    """Random sentences over the vocabulary (and an unknown word), with labels."""
    rng = random.Random(seed)
    pool = WORDS[1:] + ["zzz"]
    return [(" ".join(rng.choice(pool) for _ in range(rng.randint(1, 12))), rng.randint(0, 1)) for _ in range(count)]


def make_text_files(folder: Path, count: int = 500) -> Path:
    """``vocab.txt``, ``model.pt`` (a seeded random BiLSTM) and ``input.tsv`` with ``count`` rows in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    torch.save(BiLSTMClassifier(len(WORDS), 8, 6, 2).state_dict(), folder / "model.pt")
    rows = "".join(f"{text}\t{label}\n" for text, label in sentences(count))
    (folder / "input.tsv").write_text("sentence\tlabel\n" + rows, encoding="utf-8")
    return folder


def text_args(folder: Path, out: Path | str, *extra, model_class: str | None = None) -> list[str]:
    """Command line of ``explain-dataset`` over the files of :func:`make_text_files`."""
    args = ["explain-dataset", "--input", folder / "input.tsv", "--model", folder / "model.pt", *BILSTM,
            "--vocab", folder / "vocab.txt", "--out", out, "--shard-size", "64", "--batch-size", "32", *extra]
    if model_class is not None:
        args[args.index("seqlrp.lstm:BiLSTMClassifier")] = model_class
    return [str(a) for a in args]


def read(out: Path):
    """The dataset in ``out`` as a table sorted by id."""
    return pads.dataset(out, format="parquet").to_table().sort_by("id")


def assert_same_dataset(a, b, tolerance: float = 1e-6) -> None:
    """Same rows and columns; relevance and the float columns equal to ``tolerance``."""
    assert a.column_names == b.column_names
    assert a["id"].to_pylist() == b["id"].to_pylist() == list(range(a.num_rows))
    for name in a.column_names:
        if name == "relevance":
            x, y = (np.concatenate([np.asarray(v, np.float64) for v in t[name].to_pylist()] or [np.zeros(0)])
                    for t in (a, b))
            assert [len(v) for v in a[name].to_pylist()] == [len(v) for v in b[name].to_pylist()]
            assert np.abs(x - y).max(initial=0) <= tolerance
        elif a.schema.field(name).type in ("double", "float"):
            assert np.allclose(a[name].to_numpy(zero_copy_only=False), b[name].to_numpy(zero_copy_only=False),
                               rtol=0, atol=tolerance, equal_nan=True), name
        else:
            assert a[name].to_pylist() == b[name].to_pylist(), name


def subprocess_env() -> dict:
    """Environment of the commands the tests start: this checkout first, one thread per process."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
