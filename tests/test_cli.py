"""The seqlrp command through subprocess: outputs, messages, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

import seqlrp

CLI = [sys.executable, "-m", "seqlrp"]


def run(*args, cwd=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture()
def text_files(tmp_path: Path):
    torch.manual_seed(0)
    model = seqlrp.lstm.BiLSTMClassifier(6, 4, 3, 2).eval()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)).save(str(tmp_path / "model.ts"))
    (tmp_path / "vocab.txt").write_text("<pad>\n<unk>\ngood\nbad\nfilm\nthe\n")
    (tmp_path / "input.tsv").write_text("sentence\tlabel\nthe good film\t1\nbad <script>\t0\n")
    return tmp_path


def test_explain_text_with_state_dict(text_files):
    out = text_files / "report.html"
    result = run("explain-text", "--model", text_files / "model.pt", "--model-class", "seqlrp.lstm:BiLSTMClassifier",
                 "--model-arg", "vocab_size=6", "--model-arg", "embedding_dim=4", "--model-arg", "hidden_size=3",
                 "--model-arg", "num_classes=2", "--lengths", "--vocab", text_files / "vocab.txt",
                 "--input", text_files / "input.tsv", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and out.exists()
    html = out.read_text()
    assert html.count('class="token"') == 5 and "&lt;script&gt;" in html


def test_torchscript_is_refused_with_the_fix(text_files):
    result = run("explain-text", "--model", text_files / "model.ts", "--vocab", text_files / "vocab.txt",
                 "--input", text_files / "input.tsv")
    assert result.returncode == 3 and "TorchScript" in result.stderr and "--model-class" in result.stderr


def test_explain_text_errors(text_files):
    result = run("explain-text", "--model", text_files / "missing.pt", "--vocab", text_files / "vocab.txt",
                 "--input", text_files / "input.tsv")
    assert result.returncode == 3 and "model file not found" in result.stderr
    result = run("explain-text", "--model", text_files / "model.pt", "--vocab", text_files / "vocab.txt",
                 "--input", text_files / "input.tsv")
    assert result.returncode == 3 and "pass --model-class" in result.stderr
    result = run("explain-text", "--model", text_files / "model.pt", "--model-class", "seqlrp.lstm:BiLSTMClassifier",
                 "--model-arg", "vocab_size=7", "--model-arg", "embedding_dim=4", "--model-arg", "hidden_size=3",
                 "--model-arg", "num_classes=2", "--vocab", text_files / "vocab.txt", "--input",
                 text_files / "input.tsv")
    assert result.returncode == 3 and "does not fit" in result.stderr
    assert run("explain-text").returncode == 2  # argparse usage error


@pytest.fixture()
def image_files(tmp_path: Path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5)
    torch.save(model.state_dict(), tmp_path / "resnet18.pth")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        pixels = (torch.rand(40, 40, 3) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(images / f"img{i}.png")
    (images / "broken.png").write_bytes(b"not a png")
    return tmp_path


def test_explain_image_and_errors(image_files):
    images = image_files / "images"
    out = image_files / "report.html"
    good = [images / "img0.png", images / "img1.png"]
    # a weights file for another number of classes does not match the torchvision default (1000 classes)
    result = run("explain-image", "--arch", "resnet18", "--weights", image_files / "resnet18.pth", "--images", *good,
                 "--size", 32, "--out", out)
    assert result.returncode == 3 and "does not fit resnet18" in result.stderr and "--num-classes 5" in result.stderr
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), image_files / "full.pth")
    result = run("explain-image", "--arch", "resnet18", "--weights", image_files / "full.pth", "--images", *good,
                 "--size", 32, "--out", out)
    assert result.returncode == 0, result.stderr
    assert out.read_text().count("data:image/png;base64,") == 6
    result = run("explain-image", "--arch", "resnet18", "--weights", image_files / "full.pth", "--images", images,
                 "--size", 32, "--out", out)
    assert result.returncode == 3 and "cannot decode image" in result.stderr and "broken.png" in result.stderr
    result = run("explain-image", "--arch", "nosuchnet", "--weights", image_files / "full.pth", "--images", *good)
    assert result.returncode == 3 and "unknown architecture" in result.stderr
