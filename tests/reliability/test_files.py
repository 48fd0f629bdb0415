"""Nothing lost on disk: atomic writes, exact paths, clear errors for files that do not fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqlrp
from seqlrp.files import atomic_write
from seqlrp.lstm import load_arras, save_arras
from seqlrp.viz import Report, heatmap, save_png

from .models import text_model


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_atomic_write_replaces_and_cleans_up_after_an_error(tmp_path):
    path = tmp_path / "sub" / "file.txt"
    atomic_write(path, "first")
    atomic_write(path, b"second")
    assert path.read_text() == "second"

    def failing(file):
        file.write(b"half of the")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, failing)
    assert path.read_text() == "second" and leftovers(path.parent) == []
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda file: (_ for _ in ()).throw(KeyboardInterrupt))
    assert path.read_text() == "second" and leftovers(path.parent) == []


def test_atomic_write_replaces_a_symlink_and_refuses_a_folder(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    (tmp_path / "link.txt").symlink_to(precious)
    atomic_write(tmp_path / "link.txt", "new")
    assert precious.read_text() == "keep" and (tmp_path / "link.txt").read_text() == "new"
    assert not (tmp_path / "link.txt").is_symlink()
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder; expected a file path"):
        atomic_write(tmp_path / "folder", "x")


def test_reports_and_pngs_are_written_atomically(tmp_path, monkeypatch):
    report = Report("r")
    path = report.save(tmp_path / "report.html")
    assert path.read_text().startswith("<!DOCTYPE html>")
    monkeypatch.setattr(Report, "render", lambda self: (_ for _ in ()).throw(RuntimeError("render failed")))
    with pytest.raises(RuntimeError, match="render failed"):
        report.save(path)
    assert path.read_text().startswith("<!DOCTYPE html>") and leftovers(tmp_path) == []
    png = save_png(heatmap(torch.randn(4, 4)), tmp_path / "map.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_save_arras_keeps_the_exact_path_and_round_trips(tmp_path):
    model = text_model(cls=seqlrp.lstm.BiLSTMClassifier)
    path = tmp_path / "m.arras"
    save_arras(model, path, vocab=[f"w{i}" for i in range(12)])
    assert path.exists() and not (tmp_path / "m.arras.npz").exists()
    loaded, vocab = load_arras(path)
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(ids), model(ids), rtol=1e-12, atol=1e-12)
    assert vocab == [f"w{i}" for i in range(12)]
    with pytest.raises(ValueError, match=r"the vocabulary has 3 entries but the embedding 12 rows"):
        save_arras(model, tmp_path / "other.npz", vocab=["a", "b", "c"])


@pytest.mark.parametrize("change,match", [
    (lambda w: w.update(Whh_Right=w["Whh_Right"][:, :2]), r"inconsistent shapes for d=4, e=5, C=3: Whh_Right is "
                                                          r"\(16, 2\), expected \(16, 4\)"),
    (lambda w: w.update(bxh_Left=w["bxh_Left"][:3]), r"bxh_Left is \(3,\), expected \(16,\)"),
    (lambda w: w.update(Wxh_Left=w["Wxh_Left"][:7]), r"Wxh_Left must be \(4d, e\)"),
    (lambda w: w.update(E=w["E"] * np.nan), r"arrays \['E'\] are not finite"),
    (lambda w: w.update(vocab=np.array(["a"])), r"the vocabulary has 1 entries but E has 12 rows"),
    (lambda w: w.pop("Why_Left"), r"not an Arras LSTM weight file, missing \['Why_Left'\]"),
])
def test_load_arras_names_inconsistent_files(tmp_path, change, match):
    path = tmp_path / "m.npz"
    save_arras(text_model(cls=seqlrp.lstm.BiLSTMClassifier), path)
    with np.load(path) as data:
        arrays = dict(data)
    change(arrays)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        load_arras(path)


def test_load_arras_of_a_non_npz_file(tmp_path):
    (tmp_path / "notes.npz").write_text("not numpy")
    with pytest.raises(ValueError, match=r"not a NumPy .npz file"):
        load_arras(tmp_path / "notes.npz")
    with pytest.raises(FileNotFoundError):
        load_arras(tmp_path / "missing.npz")


def test_report_refuses_tokens_that_do_not_match_the_relevance():
    model = text_model(cls=seqlrp.lstm.BiLSTMClassifier)
    result = seqlrp.explain_text(model, torch.tensor([[1, 2, 3, 4]]))
    report = Report("r")
    with pytest.raises(ValueError, match=r"example 0 has 4 relevance values but 3 tokens were given"):
        report.add_text(result, 0, ["a", "b", "c"])
    padded = seqlrp.explain_text(model, torch.tensor([[1, 2, 3, 4]]), lengths=torch.tensor([3]))
    report.add_text(padded, 0, ["a", "b", "c"])  # with lengths the padding is left out: 3 values
