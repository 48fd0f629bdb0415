"""The CLI's error contract: every mistake prints ONE line on stderr naming the cause and exits with 3.

Most cases run ``seqlrp.cli.main`` in-process (fast); the ones that could hang (FIFOs) or depend on
how the command is started (the console script, ``python -m seqlrp``) run as subprocesses.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

import seqlrp
from seqlrp.cli import main
from seqlrp.cli.common import one_line

BILSTM = ["--model-class", "seqlrp.lstm:BiLSTMClassifier", "--model-arg", "vocab_size=6", "--model-arg",
          "embedding_dim=4", "--model-arg", "hidden_size=3", "--model-arg", "num_classes=2"]


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error(capsys, *args) -> str:
    """Run a failing command: exit 3, exactly one line on stderr, which is returned."""
    code, _, err = cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 3, err
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture()
def text(tmp_path: Path):
    torch.manual_seed(0)
    torch.save(seqlrp.lstm.BiLSTMClassifier(6, 4, 3, 2).state_dict(), tmp_path / "model.pt")
    (tmp_path / "vocab.txt").write_text("<pad>\n<unk>\ngood\nbad\nfilm\nthe\n")
    (tmp_path / "input.txt").write_text("the good film\nbad film\n")
    return tmp_path


def text_args(d: Path, **override):
    args = {"--model": d / "model.pt", "--vocab": d / "vocab.txt", "--input": d / "input.txt",
            "--out": d / "out"} | override
    return ["explain-text", *BILSTM, *[x for kv in args.items() for x in kv]]


@pytest.mark.parametrize("override,match", [
    ({"--target": "cat"}, r"--target must be a class index \(an integer such as 0 or 3\), got 'cat'"),
    ({"--target": "5000"}, r"target 5000 is out of range for an output with 2 classes \(valid: 0..1\)"),
    ({"--input": "{d}"}, r"input file .* is a folder; expected a file"),
    ({"--vocab": "{d}"}, r"vocabulary file .* is a folder; expected a file"),
    ({"--model": "{d}/missing.pt"}, r"model file not found: .*missing.pt"),
    ({"--out": "{d}/vocab.txt"}, r"--out .*vocab.txt exists and is not a folder"),
    ({"--out": "{d}/folder.html"}, r"--out .*folder.html is an existing folder"),
    ({"--input": "{d}/binary.txt"}, r"input file .*binary.txt looks binary \(it contains NUL bytes\)"),
    ({"--input": "{d}/latin1.txt"}, r"input file .*latin1.txt is not UTF-8 text \(byte 0xe9 at offset 8\); "
                                    r"re-encode it as UTF-8"),
    ({"--input": "{d}/empty.txt"}, r"no sentences in .*empty.txt"),
    ({"--input": "{d}/unknown.txt", "--unk": "<none>"}, r"word 'great' \(sentence 1\) is not in the vocabulary"),
    ({"--vocab": "{d}/twice.txt"}, r"token 'good' appears twice \(lines 3 and 4\)"),
    ({"--model": "{d}/notes.txt"}, r"notes.txt is not a PyTorch weights file \(torch.load: "),
    ({"--model": "{d}/pickled.pt"}, r"pickled.pt holds pickled Python objects, not only tensors; save "
                                    r"model.state_dict\(\)"),
    ({"--model": "{d}/wider.pt"}, r"wider.pt does not fit seqlrp.lstm:BiLSTMClassifier: 0 missing key\(s\), "
                                  r"0 unexpected key\(s\), 1 shape mismatch\(es\) \(e.g. embedding.weight: file "
                                  r"\(9, 4\), model \(6, 4\)\)"),
    ({"--model": "{d}/model.ts"}, r"model.ts is a TorchScript model"),
    ({"--epsilon": "nan"}, r"rule 'epsilon': epsilon must be finite, got nan"),
    ({"--bias-factor": "2"}, r"rule 'epsilon': bias_factor must be in \[0.0, 1.0\], got 2.0"),
])
def test_text_mistakes(capsys, text, override, match):
    (text / "folder.html").mkdir()
    (text / "binary.txt").write_bytes(b"good\x00film\n")
    (text / "latin1.txt").write_bytes("good caf\xe9 film\n".encode("latin-1"))
    (text / "empty.txt").write_text("\n  \n")
    (text / "unknown.txt").write_text("great film\n")
    (text / "twice.txt").write_text("<pad>\n<unk>\ngood\ngood\n")
    (text / "notes.txt").write_text("hello, these are notes, not weights\n")
    torch.save(seqlrp.lstm.BiLSTMClassifier(6, 4, 3, 2), text / "pickled.pt")
    torch.save(seqlrp.lstm.BiLSTMClassifier(9, 4, 3, 2).state_dict(), text / "wider.pt")
    with pytest.warns(FutureWarning):
        torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)).save(str(text / "model.ts"))
    override = {k: v.format(d=text) for k, v in override.items()}
    assert re.search(match, error(capsys, *text_args(text, **override)))


@pytest.mark.parametrize("args,match", [
    (["--model-arg", "bogus=1"], r"cannot build BiLSTMClassifier\(.*bogus=1\): TypeError: .*unexpected keyword "
                                 r"argument 'bogus' \(check --model-arg\)"),
    (["--model-arg", "noequals"], r"--model-arg 'noequals': expected key=value, e.g. hidden_size=64"),
    (["--model-class", "nosuchmodule:Net"], r"cannot import 'nosuchmodule' for --model-class: ModuleNotFoundError"),
    (["--model-class", "seqlrp.lstm:explain_text"], r"'seqlrp.lstm' has no torch.nn.Module class 'explain_text'"),
    (["--model-class", "BiLSTMClassifier"], r"--model-class must be module:Class or file.py:Class"),
    (["--lengths", "--model-class", "tests.reliability.test_cli_errors:NoLengths"],
     r"lengths were given but NoLengths.forward takes only token ids"),
])
def test_model_class_and_argument_mistakes(capsys, text, args, match):
    assert re.search(match, error(capsys, *text_args(text), *args))


class NoLengths(seqlrp.lstm.BiLSTMClassifier):
    def forward(self, ids):
        return super().forward(ids)


def test_model_args_are_python_literals(capsys, text):
    (text / "typed.py").write_text(
        "import seqlrp\n\n"
        "class Typed(seqlrp.lstm.BiLSTMClassifier):\n"
        "    def __init__(self, dropout, sizes, name, **kw):\n"
        "        assert isinstance(dropout, float) and sizes == [1, 2] and name == 'bilstm', (dropout, sizes, name)\n"
        "        super().__init__(**kw)\n")
    code, out, err = cli(capsys, *text_args(text), "--model-class", f"{text / 'typed.py'}:Typed", "--model-arg",
                         "dropout=0.1", "--model-arg", "sizes=[1, 2]", "--model-arg", "name=bilstm")
    assert code == 0, err
    assert "wrote" in out and (text / "out" / "report.html").exists()


def test_model_class_from_the_current_folder_with_the_console_script(text):
    shutil.copy(Path(__file__).parent / "models.py", text / "unused.py")  # (any file: only mymodels is imported)
    (text / "mymodels.py").write_text("from seqlrp.lstm import BiLSTMClassifier as Net\n")
    script = Path(sys.executable).parent / "seqlrp"
    args = [a.replace("seqlrp.lstm:BiLSTMClassifier", "mymodels:Net") for a in map(str, text_args(text))]
    result = subprocess.run([str(script), *args], cwd=text, capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("option", ["--input", "--model"])
def test_a_fifo_is_refused_without_hanging(text, option):
    os.mkfifo(text / "fifo")
    args = text_args(text, **{option: text / "fifo"})
    result = subprocess.run([sys.executable, "-m", "seqlrp", *map(str, args)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0 and "is not a regular file (a FIFO" in result.stderr


@pytest.fixture()
def images(tmp_path: Path):
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=5).state_dict(), tmp_path / "resnet18.pth")
    (tmp_path / "images").mkdir()
    (tmp_path / "empty").mkdir()
    for i in range(2):
        Image.fromarray((torch.rand(40, 50, 3) * 255).to(torch.uint8).numpy()).save(tmp_path / "images" / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("not weights\n")
    _bomb(tmp_path / "bomb.png")
    return tmp_path


def _bomb(path: Path) -> None:
    """A tiny PNG whose header claims 30000 x 30000 pixels (PIL refuses it before decoding)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))


def image_args(d: Path, *extra, **override):
    args = {"--arch": "resnet18", "--weights": d / "resnet18.pth", "--num-classes": "5", "--size": "32",
            "--out": d / "out"} | override
    return ["explain-image", *[x for kv in args.items() for x in kv], *extra]


@pytest.mark.parametrize("override,extra,match", [
    ({"--size": "0"}, ["--images", "{d}/images"], r"--size must be a positive integer, got 0"),
    ({"--num-classes": "-3"}, ["--images", "{d}/images"], r"--num-classes must be a positive integer, got -3"),
    ({}, ["--images", "{d}/empty"], r"no images \(.png, .jpg.*\) in the folder .*empty"),
    ({}, ["--images", "{d}/bomb.png"], r"image .*bomb.png is too large to decode safely"),
    ({}, ["--images", "{d}/broken.png"], r"cannot decode image .*broken.png"),
    ({}, ["--images", "{d}/missing.png"], r"image not found: .*missing.png"),
    ({"--num-classes": "1000"}, ["--images", "{d}/images"],
     r"does not fit resnet18: .*fc.weight: file \(5, 512\), model \(1000, 512\).*pass --num-classes 5"),
    ({"--weights": "{d}/notes.txt"}, ["--images", "{d}/images"], r"notes.txt is not a PyTorch weights file"),
    ({"--arch": "nosuchnet"}, ["--images", "{d}/images"], r"unknown architecture 'nosuchnet'"),
    ({"--target": "5000"}, ["--images", "{d}/images"], r"target 5000 is out of range for an output with 5 classes"),
    ({"--target": "dog"}, ["--images", "{d}/images"], r"--target must be a class index"),
])
def test_image_mistakes(capsys, images, override, extra, match):
    override = {k: v.format(d=images) for k, v in override.items()}
    extra = [e.format(d=images) for e in extra]
    assert re.search(match, error(capsys, *image_args(images, *extra, **override)))


def test_image_report_keeps_the_aspect_and_is_written(capsys, images):
    code, out, err = cli(capsys, *image_args(images, "--images", images / "images"))
    assert code == 0, err
    assert (images / "out" / "report.html").read_text().count("data:image/png;base64,") == 6


def test_ctrl_c_leaves_no_half_written_file(capsys, text, monkeypatch):
    out = text / "report.html"
    out.write_text("the previous report")

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(seqlrp.viz.Report, "render", interrupted)
    code, _, err = cli(capsys, *text_args(text, **{"--out": out}))
    assert code == 130 and err.strip().count("\n") == 0 and "interrupted" in err
    assert out.read_text() == "the previous report"
    assert sorted(p.name for p in text.iterdir() if p.name.startswith(".")) == []


def test_an_internal_error_is_one_line_with_exit_1(capsys, text, monkeypatch):
    def broken(self):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(seqlrp.viz.Report, "render", broken)
    code, _, err = cli(capsys, *text_args(text))
    assert code == 1 and err.strip().count("\n") == 0
    assert "internal error: ZeroDivisionError: a bug" in err and "SEQLRP_TRACEBACK=1" in err


def test_a_symlink_at_the_destination_is_replaced_not_followed(capsys, text):
    target = text / "precious.html"
    target.write_text("do not overwrite me")
    (text / "link.html").symlink_to(target)
    code, _, err = cli(capsys, *text_args(text, **{"--out": text / "link.html"}))
    assert code == 0, err
    assert target.read_text() == "do not overwrite me"
    assert not (text / "link.html").is_symlink() and "<!DOCTYPE html>" in (text / "link.html").read_text()


def test_out_is_a_folder_or_an_html_file_for_every_command(capsys, text):
    for out, written in ((text / "reports", text / "reports" / "report.html"),
                         (text / "mine.html", text / "mine.html")):
        code, stdout, err = cli(capsys, *text_args(text, **{"--out": out}))
        assert code == 0 and written.exists() and str(written.resolve()) in stdout, err


def test_one_line_strips_terminal_codes_and_newlines():
    assert one_line("\x1b[31mError(s) in loading\x1b[0m:\n\tsize mismatch\n") == "Error(s) in loading: size mismatch"
    assert len(one_line("x" * 5000)) == 800


def test_version_and_help_text_for_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"seqlrp {seqlrp.__version__}"
    parser = seqlrp.cli.parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        for action in command._actions:
            assert action.help, f"seqlrp {name} {action.option_strings}: no help text"
        assert "example" in (command.epilog or ""), f"seqlrp {name} --help has no example"


def test_python_dash_m_seqlrp_works():
    result = subprocess.run([sys.executable, "-m", "seqlrp", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("seqlrp ")
