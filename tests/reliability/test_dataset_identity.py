"""Issue 25 item 1: a dataset run's identity covers everything that determines a row.

Re-running or resuming ``explain_dataset(model, data, out=DIR)`` with other data of the same length, another
vocabulary of the same size, other rule parameters, or a model whose code changed but not its state_dict
returned the old dataset (or one mixing rows of both runs), complete, without a word. Each case below must be
refused naming what changed; the same run still resumes; a stray part file beyond the plan is refused.
"""

from __future__ import annotations

import re
import textwrap

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.cli import main
from seqlrp.dataset import DatasetSource
from seqlrp.lstm import BiLSTMClassifier
from tests.dataset.helpers import WORDS, make_text_files, read, text_args


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BiLSTMClassifier(len(WORDS), 4, 3, 2).eval()


def _ids(seed: int, rows: int = 12) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(2, len(WORDS), (int(n),), generator=gen).tolist()
            for n in torch.randint(1, 6, (rows,), generator=gen)]


def test_other_data_of_the_same_length_is_refused_not_resumed(tmp_path, model):
    out = tmp_path / "out"
    seqlrp.explain_dataset(model, DatasetSource(_ids(0)), out=out, shard_size=5)
    (out / "part-00001.parquet").unlink()  # (interrupted: a resume with other data must not mix the two)
    with pytest.raises(ValueError, match=r"holds a dataset of another run \(the input's content changed \(shard 0, "
                                         r"rows 0 to 4, reads differently\)\).*overwrite=True to recompute"):
        seqlrp.explain_dataset(model, DatasetSource(_ids(1)), out=out, shard_size=5)
    summary = seqlrp.explain_dataset(model, DatasetSource(_ids(1)), out=out, shard_size=5, overwrite=True)
    assert summary.complete and read(out)["tokens"].to_pylist() == [[str(i) for i in row] for row in _ids(1)]


def test_the_same_run_resumes(tmp_path, model):
    out = tmp_path / "out"
    seqlrp.explain_dataset(model, DatasetSource(_ids(0)), out=out, shard_size=5)
    (out / "part-00001.parquet").unlink()
    summary = seqlrp.explain_dataset(model, DatasetSource(_ids(0)), out=out, shard_size=5)
    assert summary.complete and summary.explained == 5


def test_another_vocabulary_of_the_same_size_is_refused(tmp_path, model):
    out = tmp_path / "out"
    rows = [["good", "film"], ["bad", "plot"]]
    seqlrp.explain_dataset(model, DatasetSource(rows, vocabulary=WORDS), out=out)
    swapped = [*WORDS[:2], WORDS[3], WORDS[2], *WORDS[4:]]  # (good <-> bad: same size, other ids)
    with pytest.raises(ValueError, match=r"the vocabulary changed \(options.vocabulary: "):
        seqlrp.explain_dataset(model, DatasetSource(rows, vocabulary=swapped), out=out)


def test_other_composite_parameters_are_refused(tmp_path):
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    images = [torch.rand(3, 6, 6) for _ in range(4)]
    out = tmp_path / "out"
    seqlrp.explain_dataset(cnn, images, seqlrp.cnn.EpsilonGammaBox(0.0, 1.0), out=out)
    with pytest.raises(ValueError, match=r"the rule parameters changed \(options.rules"):
        seqlrp.explain_dataset(cnn, images, seqlrp.cnn.EpsilonGammaBox(-5.0, 5.0, gamma=2.0), out=out)
    with pytest.raises(ValueError, match=r"the rule parameters changed"):
        seqlrp.explain_dataset(cnn, images, seqlrp.cnn.EpsilonGammaBox(0.0, 1.0, gamma=0.5), out=out)
    assert seqlrp.explain_dataset(cnn, images, seqlrp.cnn.EpsilonGammaBox(0.0, 1.0), out=out).explained == 0


class _WithBuffer(nn.Module):
    """A model with a non-persistent buffer: not in the state_dict, but the model's (a model may read it)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
        self.register_buffer("table", torch.ones(3), persistent=False)

    def forward(self, x):
        return self.linear(x)


def test_a_non_persistent_buffer_changed_is_refused(tmp_path):
    model = _WithBuffer().eval()
    out = tmp_path / "out"
    rows = [torch.rand(3, 2, 2)]
    seqlrp.explain_dataset(model, rows, out=out)
    model.table.fill_(3.0)
    with pytest.raises(ValueError, match=r"the model's parameters or buffers changed"):
        seqlrp.explain_dataset(model, rows, out=out)


def test_a_stray_part_beyond_the_plan_is_refused(tmp_path, model):
    out = tmp_path / "out"
    seqlrp.explain_dataset(model, DatasetSource(_ids(0)), out=out, shard_size=5)
    (out / "part-00009.parquet").write_bytes((out / "part-00000.parquet").read_bytes())
    with pytest.raises(ValueError, match=r"holds part-00009.parquet beyond the 3 shard\(s\) of this run \(readers "
                                         r"would see those rows too\)"):
        seqlrp.explain_dataset(model, DatasetSource(_ids(0)), out=out, shard_size=5)


MODEL_FILE = """
from seqlrp.lstm import BiLSTMClassifier


class Mine(BiLSTMClassifier):
    def forward(self, token_ids, lengths=None):
        return super().forward(token_ids, lengths){change}
"""


def test_cli_model_class_file_edited_is_refused(tmp_path, capsys):
    files = make_text_files(tmp_path / "files", count=20)
    (files / "mine.py").write_text(textwrap.dedent(MODEL_FILE.format(change="")))
    args = text_args(files, tmp_path / "out", model_class=f"{files / 'mine.py'}:Mine")
    assert main(args) == 0
    (files / "mine.py").write_text(textwrap.dedent(MODEL_FILE.format(change=" * 2")))  # same state_dict, 2x logits
    capsys.readouterr()
    assert main(args) == 3
    err = capsys.readouterr().err
    assert re.search(r"--out .*out holds a dataset of another run \(the model's code changed \(model.code.mine.Mine: "
                     r"'[0-9a-f]+' there, '[0-9a-f]+' now\)\).*pass --overwrite to recompute it", err), err


def test_cli_input_content_changed_is_refused_even_with_size_and_mtime_kept(tmp_path, capsys):
    import os

    files = make_text_files(tmp_path / "files", count=20)
    args = text_args(files, tmp_path / "out")
    assert main(args) == 0
    path = files / "input.tsv"
    stat, text = path.stat(), path.read_text()
    assert "good" in text
    path.write_text(text.replace("good", "bad ", 1))  # (same size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    capsys.readouterr()
    assert main(args) == 3
    assert "the input's content changed (shard 0" in capsys.readouterr().err


class _Augmented(torch.utils.data.Dataset):
    """Images under a random transform: every read differs, so no run of it can be resumed or checked."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.rand(3, 2, 2), index % 2


def test_data_that_reads_differently_during_the_run_is_refused(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval()
    with pytest.raises(ValueError, match=r"shard 0 \(rows 0 to 1\) reads differently on rank 0 than when the run "
                                         r"started: .*random transform"):
        seqlrp.explain_dataset(model, _Augmented(), out=tmp_path / "out", shard_size=2)
    assert seqlrp.explain_dataset(model, _Augmented()).num_rows == 4  # (no out=: nothing to resume)
