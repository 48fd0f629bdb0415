"""``explain-dataset`` / ``report-dataset`` mistakes: ONE line on stderr naming the cause and the fix, exit 3;
the model untouched when the Python API refuses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import seqlrp
from seqlrp.cli import main
from seqlrp.lstm import BiLSTMClassifier
from tests.core.helpers import untouched
from tests.dataset.helpers import WORDS, make_text_files, text_args


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.set_num_threads(1)
    folder = make_text_files(tmp_path_factory.mktemp("files"), count=80)
    (folder / "nofield.jsonl").write_text('{"text": "good film"}\n{"body": "bad film"}\n')
    (folder / "notjson.jsonl").write_text('{"text": "good film"}\n[1, 2]\n')
    (folder / "header.tsv").write_text("sentence\tlabel\n")
    (folder / "empty.txt").write_text("\n \n")
    (folder / "ragged.tsv").write_text("sentence\tlabel\ngood film\t1\nbad\tfilm\t0\n")
    (folder / "notes.xml").write_text("<a/>")
    (folder / "binary.txt").write_bytes(b"good\x00film\n")
    (folder / "latin1.txt").write_bytes("good film\ncaf\xe9\n".encode("latin-1"))
    (folder / "afile").write_text("x")
    (folder / "foreign").mkdir()
    (folder / "foreign" / "notes.txt").write_text("mine")
    return folder


def error(capsys, *args) -> str:
    """Run a failing command: exit 3, exactly one line on stderr, which is returned."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 3, err
    assert len(lines) == 1, err
    return lines[0]


def with_input(files: Path, name: str, *extra, out: Path | None = None) -> list[str]:
    args = text_args(files, out or files / f"out-{name}", *extra)
    args[args.index("--input") + 1] = str(files / name)
    return args


@pytest.mark.parametrize("name,extra,match", [
    ("input.tsv", ["--text-column", "review"], r"--text-column 'review' is not a column of .*input.tsv \(columns: "
                                               r"sentence, label\); pass --text-column NAME"),
    ("input.tsv", ["--label-column", "stars"], r"--label-column 'stars' is not a column of .*input.tsv"),
    ("nofield.jsonl", [], r"line 2 of .*nofield.jsonl has no field 'text' \(fields: body\); every line needs it "
                          r"\(--text-field NAME\)"),
    ("nofield.jsonl", ["--text-field", "review"], r"--text-field 'review' is not a field of .*nofield.jsonl "
                                                  r"\(fields: text\)"),
    ("notjson.jsonl", [], r"line 2 of .*notjson.jsonl is a JSON list, not an object"),
    ("header.tsv", [], r"no rows in .*header.tsv \(blank lines are not rows\)"),
    ("empty.txt", [], r"no rows in .*empty.txt"),
    ("ragged.tsv", [], r"line 3 of .*ragged.tsv has 3 field\(s\) but the header has 2; check the delimiter \(TAB\)"),
    ("notes.xml", [], r"input file .*notes.xml has an unknown format '.xml'; expected one of .txt, .tsv, .csv, "
                      r".jsonl, .parquet"),
    ("binary.txt", [], r"input file .*binary.txt looks binary \(it contains NUL bytes\)"),
    ("latin1.txt", [], r"input file .*latin1.txt is not UTF-8 text \(byte 0xe9 on line 2\); re-encode it"),
    ("foreign", [], r"input file .*foreign is a folder; expected a file"),
    ("missing.tsv", [], r"input file not found: .*missing.tsv"),
    ("input.tsv", ["--limit", "0"], r"--limit must be a positive integer, got 0"),
    ("input.tsv", ["--batch-size", "0"], r"--batch-size must be a positive integer, got 0"),
    ("input.tsv", ["--workers", "0"], r"--workers must be a positive integer, got 0"),
    ("input.tsv", ["--target", "7"], r"target 7 is out of range for an output with 2 classes"),
    ("input.tsv", ["--unk", "<none>"], r"word 'zzz' \(row \d+\) is not in the vocabulary and there is no '<none>' "
                                       r"token \(pass --unk\)"),
])
def test_input_mistakes(capsys, files, tmp_path, name, extra, match):
    assert re.search(match, error(capsys, *with_input(files, name, *extra, out=tmp_path / "out")))


def test_out_mistakes(capsys, files):
    assert re.search(r"--out .*afile exists and is not a folder; pass a folder for the Parquet dataset",
                     error(capsys, *text_args(files, files / "afile")))
    assert re.search(r"--out .*foreign is not empty \(notes.txt\) and holds no seqlrp dataset \(no _manifest.json\); "
                     r"pass a new or empty folder", error(capsys, *text_args(files, files / "foreign", "--overwrite")))


def test_missing_model_options(capsys, files):
    args = text_args(files, files / "out-x")
    del args[args.index("--vocab"):args.index("--vocab") + 2]
    assert re.search(r"--input \(text\) needs --vocab", error(capsys, *args))
    assert re.search(r"--images needs --arch, --weights",
                     error(capsys, "explain-dataset", "--images", files, "--out", files / "out-y"))


def test_resume_with_another_command_line_is_refused(capsys, files):
    out = files / "out-resume"
    assert main(text_args(files, out)) == 0
    capsys.readouterr()
    assert re.search(r"--out .*out-resume holds a dataset of another run \(the rule parameters changed "
                     r"\(options.rules.epsilon: 0.001 there, 0.01 now\)\), whose rows are not this run's; "
                     r"run the same command to resume it, pass --overwrite to recompute it, or choose another --out",
                     error(capsys, *text_args(files, out, "--epsilon", "0.01")))
    assert re.search(r"\(limit: None there, 10 now\)", error(capsys, *text_args(files, out, "--limit", "10")))
    (files / "input.tsv").touch()  # (touched, same content: the same run)
    assert main(text_args(files, out)) == 0


def test_corrupt_part_file_is_named_with_the_fix(capsys, files):
    out = files / "out-corrupt"
    assert main(text_args(files, out)) == 0
    capsys.readouterr()
    (out / "_SUCCESS").unlink()
    (out / "part-00001.parquet").write_bytes(b"PAR1 truncated by a copy that was killed")
    assert re.search(r"part-00001.parquet is not a readable Parquet file \(.*\); seqlrp writes parts atomically, so "
                     r"it was changed by something else: delete it and run the same command again to recompute that "
                     r"shard", error(capsys, *text_args(files, out)))
    (out / "part-00001.parquet").unlink()
    assert main(text_args(files, out)) == 0 and (out / "_SUCCESS").exists()


def test_corrupt_manifest(capsys, files):
    out = files / "out-manifest"
    out.mkdir()
    (out / "_manifest.json").write_text("{not json")
    assert re.search(r"_manifest.json is not a seqlrp manifest \(JSONDecodeError: .*\); pass --overwrite to start "
                     r"the output afresh", error(capsys, *text_args(files, out)))
    assert main(text_args(files, out, "--overwrite")) == 0


def test_report_mistakes(capsys, files):
    out = files / "out-report"
    assert main(text_args(files, out)) == 0
    capsys.readouterr()
    assert re.search(r"dataset folder not found: .*nothing",
                     error(capsys, "report-dataset", files / "nothing", "--out", files / "r.html"))
    assert re.search(r".*foreign is not a seqlrp dataset \(no _manifest.json\)",
                     error(capsys, "report-dataset", files / "foreign", "--out", files / "r.html"))
    assert re.search(r"--out .*report.html is inside the dataset folder",
                     error(capsys, "report-dataset", out, "--out", out / "report.html"))
    assert re.search(r"--min-count must be a positive integer, got 0",
                     error(capsys, "report-dataset", out, "--out", files / "r.html", "--min-count", "0"))
    (out / "_SUCCESS").unlink()
    assert re.search(r"out-report is incomplete \(no _SUCCESS\): run the same command \(or explain_dataset call\) "
                     r"again",
                     error(capsys, "report-dataset", out, "--out", files / "r.html"))


def test_api_refusals_leave_the_model_untouched(tmp_path):
    model = BiLSTMClassifier(len(WORDS), 4, 3, 2).eval()
    with untouched(model):
        with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
            seqlrp.explain_dataset(model, [[1, 2]], batch_size=0)
        with pytest.raises(ValueError, match=r"token_ids contain id 99, but the embedding has only 10 rows"):
            seqlrp.explain_dataset(model, [[1, 99]], out=tmp_path / "out")
        with pytest.raises(ValueError, match="out= is required|data is empty"):
            seqlrp.explain_dataset(model, [])
