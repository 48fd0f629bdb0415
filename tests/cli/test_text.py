"""``seqlrp explain-text``: --labels and --compare."""

from __future__ import annotations

import html5lib
import torch

import seqlrp
from seqlrp.cli import main


def _files(tmp_path):
    torch.manual_seed(0)
    torch.save(seqlrp.lstm.BiLSTMClassifier(6, 4, 3, 2).eval().state_dict(), tmp_path / "model.pt")
    (tmp_path / "vocab.txt").write_text("<pad>\n<unk>\ngood\nbad\nfilm\nthe\n")
    (tmp_path / "input.tsv").write_text("sentence\tlabel\nthe good film\t1\nbad film\t0\n")
    (tmp_path / "labels.txt").write_text("negative\npositive\n")
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    return tmp_path


def _run(path, *extra):
    return main(["explain-text", "--model", str(path / "model.pt"), "--model-class", "seqlrp.lstm:BiLSTMClassifier",
                 "--model-arg", "vocab_size=6", "--model-arg", "embedding_dim=4", "--model-arg", "hidden_size=3",
                 "--model-arg", "num_classes=2", "--vocab", str(path / "vocab.txt"), "--input",
                 str(path / "input.tsv"), "--out", str(path / "r.html"), *extra])


def test_labels_and_comparison(tmp_path, capsys):
    path = _files(tmp_path)
    assert _run(path, "--labels", str(path / "labels.txt"), "--compare") == 0
    dom = html5lib.parse((path / "r.html").read_text(), namespaceHTMLElements=False)
    names = [b.text for b in dom.iter("b") if b.get("class") == "class"]
    assert names[0] == "positive (1)" and names[3] == "negative (0)"
    assert all(n.split(" (")[0] in {"negative", "positive"} for n in names)
    methods = [s.text for s in dom.iter("span") if s.get("class") == "method"]
    assert methods == ["LRP ε=0.001", "gradient × input", "gradient² (sensitivity)"] * 2
    assert len([s for s in dom.iter("span") if s.get("class") == "token"]) == 3 * (3 + 2)
    assert _run(path, "--labels", str(path / "three.txt")) == 3
    assert "has 3 lines but the model has 2 classes" in capsys.readouterr().err
