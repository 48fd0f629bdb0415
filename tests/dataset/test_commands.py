"""``seqlrp explain-dataset`` / ``report-dataset``: every input format, torchrun with 2 processes equal to one,
a worker killed mid-run and the command re-run, Ctrl-C, --overwrite, images, the report in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import html5lib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torchvision
from PIL import Image

from benchmarks.dataset import descendants
from seqlrp.cli import main
from seqlrp.lstm import BiLSTMClassifier
from tests.dataset.helpers import (
    ROOT,
    assert_same_dataset,
    make_text_files,
    read,
    sentences,
    subprocess_env,
    text_args,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_text_files(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def reference(files, tmp_path_factory):
    """The uninterrupted single-process run over the 500-line TSV."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(text_args(files, out)) == 0
    return read(out)


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_input_format(tmp_path, files, capsys):
    rows = sentences(40, seed=3)
    (tmp_path / "in.txt").write_text("".join(f"{t}\n" for t, _ in rows))
    (tmp_path / "in.csv").write_text("text,label\n" + "".join(f"{t.replace(',', '')},{y}\n" for t, y in rows))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"review": t, "stars": y}) + "\n" for t, y in rows))
    pq.write_table(pa.table({"sentence": [t for t, _ in rows], "label": [y for _, y in rows]}), tmp_path / "in.parquet")
    (tmp_path / "in.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    tables = {}
    for name, extra in (("in.tsv", []), ("in.txt", []), ("in.csv", []), ("in.parquet", []),
                        ("in.jsonl", ["--text-field", "review", "--label-field", "stars"])):
        args = text_args(files, tmp_path / name.replace(".", "_"), *extra, "--limit", "30")
        args[args.index("--input") + 1] = str(tmp_path / name)
        code, out, err = run(capsys, *args)
        assert code == 0, err
        assert "30 examples explained" in err and "dataset complete: 30 rows" in err and "wrote" in out
        tables[name] = read(tmp_path / name.replace(".", "_"))
    for name, table in tables.items():
        assert table.num_rows == 30
        assert table["tokens"].to_pylist() == [t.replace(",", "").split() if name == "in.csv" else t.split()
                                               for t, _ in rows[:30]]
        assert table["label"].to_pylist() == ([None] * 30 if name == "in.txt" else [y for _, y in rows[:30]])
        if name != "in.csv":
            assert_same_dataset(table.drop_columns("label"), tables["in.tsv"].drop_columns("label"))


def test_torchrun_two_processes_equal_one(files, reference, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "seqlrp",
               *text_args(files, out)]
    result = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = [line for line in result.stderr.splitlines() if "examples explained" in line]
    assert len(summary) == 1 and "per rank: 256, 244" in summary[0], result.stderr[-3000:]
    assert result.stdout.count("wrote") == 1
    assert_same_dataset(read(out), reference, tolerance=1e-6)
    assert json.loads((out / "_SUCCESS").read_text())["rows"] == 500


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the workers")
def test_worker_killed_mid_run_then_the_same_command_completes_it(files, tmp_path, capsys):
    """--workers 2 with a slow model: kill -9 one worker once the first part exists; the launcher stops the
    run; the same command run again completes the missing shards: the uninterrupted dataset, no duplicates."""
    out = tmp_path / "out"
    args = text_args(files, out, "--workers", "2", model_class="tests.dataset.helpers:SlowBiLSTM")
    process = subprocess.Popen([sys.executable, "-m", "seqlrp", *args], cwd=ROOT,
                               env=subprocess_env() | {"SLOW_FORWARD_SECONDS": "0.1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        workers = [pid for pid in descendants(process.pid)
                   if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]
        assert len(workers) >= 2, "the two workers were not found"
        os.kill(workers[-1], signal.SIGKILL)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 3, err[-3000:]
    assert "worker(s) failed" in err and "run the same command again to resume" in err
    parts = sorted(out.glob("part-*.parquet"))
    assert 0 < len(parts) < 8 and not (out / "_SUCCESS").exists()
    for part in parts:  # every visible part is complete
        assert pq.read_metadata(part).num_rows == 64 if part.name != "part-00007.parquet" else 52
    code, _, err = run(capsys, *args[:-2])  # the same command, on one process (the shards do not depend on it)
    assert code == 0, err
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    reference_out = tmp_path / "reference"
    assert main(text_args(files, reference_out, model_class="tests.dataset.helpers:SlowBiLSTM")) == 0
    result = read(out)
    assert len(set(result["id"].to_pylist())) == result.num_rows == 500
    assert_same_dataset(result, read(reference_out))


class InterruptedBiLSTM(BiLSTMClassifier):
    """Raises KeyboardInterrupt (as Ctrl-C does) in its ``calls_left``-th forward, when set."""

    calls_left: int | None = None

    def forward(self, token_ids, lengths=None):
        if InterruptedBiLSTM.calls_left is not None:
            InterruptedBiLSTM.calls_left -= 1
            if InterruptedBiLSTM.calls_left == 0:
                raise KeyboardInterrupt
        return super().forward(token_ids, lengths)


def test_ctrl_c_leaves_complete_parts_and_the_rerun_completes(files, reference, tmp_path, capsys):
    out = tmp_path / "out"
    args = text_args(files, out, model_class="tests.dataset.test_commands:InterruptedBiLSTM")
    InterruptedBiLSTM.calls_left = 30
    try:
        code, _, err = run(capsys, *args)
    finally:
        InterruptedBiLSTM.calls_left = None
    assert code == 130 and "interrupted" in err
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert 0 < len(list(out.glob("part-*"))) < 8 and not (out / "_SUCCESS").exists()
    code, _, err = run(capsys, *args)
    assert code == 0, err
    assert_same_dataset(read(out), reference)


def test_overwrite(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, *text_args(files, out, "--limit", "100"))[0] == 0
    code, _, err = run(capsys, *text_args(files, out, "--limit", "100", "--epsilon", "0.01"))
    assert code == 3 and "run the same command to resume it, pass --overwrite to recompute it" in err
    code, _, err = run(capsys, *text_args(files, out, "--limit", "70", "--epsilon", "0.01", "--overwrite"))
    assert code == 0, err
    assert read(out).num_rows == 70 and len(list(out.glob("part-*"))) == 2
    rules = json.loads((out / "_manifest.json").read_text())["signature"]["options"]["rules"]
    assert '"epsilon": 0.01' in json.dumps(rules) and '"epsilon": 0.001' not in json.dumps(rules)


SCRIPT = "<script>document.title='pwned'</script>"


def test_text_report_renders_escaped_in_chromium(files, tmp_path, capsys):
    rows = [f"{SCRIPT} good film" if i % 2 else f"bad plot {SCRIPT}" for i in range(60)]
    (tmp_path / "in.txt").write_text("\n".join(rows) + "\n")
    args = text_args(files, tmp_path / "data")
    args[args.index("--input") + 1] = str(tmp_path / "in.txt")
    assert run(capsys, *args)[0] == 0
    code, out, err = run(capsys, "report-dataset", tmp_path / "data", "--out", tmp_path / "report.html",
                         "--min-count", "2", "--class-names", "negative,positive")
    assert code == 0, err
    html = (tmp_path / "report.html").read_text()
    assert SCRIPT not in html and "&lt;script&gt;document.title=" in html
    source = html5lib.parse(html, namespaceHTMLElements=False)
    headings = [h.text for h in source.findall(".//h2")]
    assert "Conservation at scale" in headings
    assert any("tokens with the highest mean relevance" in h for h in headings)
    assert len(source.findall(".//img")) == 2  # the scatter and the histogram
    focus = source.findall(".//span[@class='token focus']")
    assert focus and any(span.text == SCRIPT for span in source.findall(".//span"))
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium as root); browser check skipped")
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (tmp_path / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = html5lib.parse(dom.stdout, namespaceHTMLElements=False)
    assert rendered.find(".//title").text.startswith("seqlrp dataset report")  # the token did not run
    assert len(rendered.findall(".//span[@class='token focus']")) == len(focus)
    assert len(rendered.findall(".//img")) == 2
    # a screenshot at 1400 px: drawn (not blank), the figures loaded
    shot = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1400",
                           f"--screenshot={tmp_path / 'report.png'}", (tmp_path / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and (tmp_path / "report.png").exists(), shot.stderr[-2000:]
    with Image.open(tmp_path / "report.png") as picture:
        pixels = np.asarray(picture.convert("RGB"), dtype=np.float64) / 255.0
    assert pixels.shape[:2] == (1400, 1400) and pixels.std() > 0.05


def test_images_and_their_report(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                tmp_path / "images" / name / f"{i}.png")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), tmp_path / "r18.pth")
    code, _, err = run(capsys, "explain-dataset", "--images", tmp_path / "images", "--arch", "resnet18", "--weights",
                       tmp_path / "r18.pth", "--num-classes", "2", "--size", "32", "--out", tmp_path / "data",
                       "--batch-size", "4", "--shard-size", "4")
    assert code == 0, err
    table = read(tmp_path / "data")
    assert table["path"].to_pylist() == [f"{c}/{i}.png" for c in ("cat", "dog") for i in range(3)]
    assert table["label"].to_pylist() == [0, 0, 0, 1, 1, 1]
    assert set(table["height"].to_pylist()) == {32} and len(table["relevance"][0]) == 32 * 32
    assert pa.types.is_float32(table.schema.field("relevance").type.value_type)  # (float16 overflowed above 65504)
    code, _, err = run(capsys, "report-dataset", tmp_path / "data", "--out", tmp_path / "report", "--examples", "2")
    assert code == 0, err
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Mean relevance map per explained class" in html and "Images with the highest relevance sum" in html
    assert html.count("<img") == 5
