"""Issue 25, friction a new user hits, in the command line and the reports: each with a test that failed before.

``--version`` without torch; a model that needs lengths run without ``--lengths``; ``--labels`` against the default
``--num-classes``; one option for class names (``--labels FILE``) in ``report-dataset`` too; ``--context -1``;
``Report(page_size=0)``; ``add_text(true_label='pos')``; the "How to read" help matching the page; unknown words
counted and marked; the conservation Δ next to Σ|R|; the thread count of a single process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import html5lib
import pytest
import torch
import torchvision

import seqlrp
from seqlrp.cli import main
from seqlrp.cli.dataset import default_threads
from seqlrp.viz import Report
from tests.dataset.helpers import ROOT, make_text_files, subprocess_env, text_args


def _error(capsys, args) -> str:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 3 and len(err.strip().splitlines()) == 1, err
    return err


def test_version_and_help_answer_without_importing_torch():
    code = ("import sys\nfrom seqlrp.cli import main\nfor argv in (['--version'], ['--help'], "
            "['explain-dataset', '--help']):\n    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("False"), result.stdout + result.stderr
    assert "seqlrp 0.1.0" in result.stdout and "explain-dataset" in result.stdout


NEEDS_LENGTHS = """
from seqlrp.lstm import BiLSTMClassifier


class NeedsLengths(BiLSTMClassifier):
    def forward(self, token_ids, lengths):
        return super().forward(token_ids, lengths)
"""


def test_a_model_that_needs_lengths_names_the_option(tmp_path, capsys):
    files = make_text_files(tmp_path, count=4)
    (files / "needs.py").write_text(textwrap.dedent(NEEDS_LENGTHS))
    args = text_args(files, tmp_path / "out", model_class=f"{files / 'needs.py'}:NeedsLengths")
    err = _error(capsys, args)
    assert "forward needs lengths (forward() missing 'lengths'): pass --lengths" in err
    assert main(args + ["--lengths"]) == 0  # (the failed run left no part: the new identity starts afresh)
    capsys.readouterr()
    text = ["explain-text", "--model", files / "model.pt", "--model-class", f"{files / 'needs.py'}:NeedsLengths",
            *args[args.index("--model-arg"):args.index("--vocab")], "--vocab", files / "vocab.txt", "--input",
            files / "input.tsv", "--out", tmp_path / "r.html"]
    assert "pass --lengths" in _error(capsys, text)


def test_labels_against_the_default_num_classes_name_num_classes(tmp_path, capsys):
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), tmp_path / "w.pth")
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    (tmp_path / "a.png").write_bytes(b"")
    err = _error(capsys, ["explain-image", "--arch", "resnet18", "--weights", tmp_path / "w.pth", "--labels",
                          tmp_path / "labels.txt", "--images", tmp_path / "a.png"])
    assert "labels file" in err and "has 3 class names but --num-classes is 1000; pass --num-classes 3" in err


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    files = make_text_files(folder, count=60)
    assert main(text_args(files, folder / "out")) == 0
    (folder / "classes.txt").write_text("negative\npositive\n")
    return folder


def test_report_dataset_takes_labels_file_and_refuses_negative_context(dataset, capsys):
    out = dataset / "r.html"
    assert main(["report-dataset", str(dataset / "out"), "--out", str(out), "--labels", str(dataset / "classes.txt"),
                 "--min-count", "1"]) == 0
    page = out.read_text()
    assert "negative (0)" in page or "positive (1)" in page
    with pytest.warns(DeprecationWarning, match="--class-names is deprecated: pass --labels FILE"):
        from seqlrp.cli.dataset import _report

        args = main.__globals__["parser"]().parse_args(["report-dataset", str(dataset / "out"), "--out", str(out),
                                                        "--class-names", "neg,pos", "--min-count", "1"])
        _report(args)
    assert "neg (0)" in out.read_text() or "pos (1)" in out.read_text()
    err = _error(capsys, ["report-dataset", dataset / "out", "--out", out, "--context", "-1"])
    assert "--context must be an integer >= 0 (tokens on each side), got -1" in err


def test_dataset_report_help_matches_the_page_and_marks_unknown_words(dataset):
    out = dataset / "r2.html"
    seqlrp.report_dataset(dataset / "out", out, min_count=1, top=50)
    page = out.read_text()
    assert "Token values" not in page and "show each token" not in page and "per example</b>" not in page
    assert "Tokens in context" in page and "each\ncontext window is coloured on its own scale" in page
    assert "word occurrence(s)" in page and "zzz (unknown)" in page  # (zzz is not in the test vocabulary)


def test_the_summary_counts_unknown_words_and_says_the_threads(dataset, capsys):
    files = dataset
    main(text_args(files, dataset / "out2"))
    err = capsys.readouterr().err
    assert "unknown word(s) read as the unknown-word token" in err and "thread(s) per process" in err
    count = sum(sentence.split().count("zzz") for sentence in (files / "input.tsv").read_text().splitlines()[1:])
    assert f"; {count} unknown word(s)" in err and count > 0


def test_threads_follow_the_free_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (7.6, 7.0, 7.0))
    assert default_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.1, 0.1))
    assert default_threads() == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.setattr(os, "getloadavg", lambda: (7.6, 7.0, 7.0))
    assert default_threads() == 8
    assert threads >= 1


def _text_explanation():
    torch.manual_seed(0)
    model = seqlrp.lstm.BiLSTMClassifier(6, 4, 3, 2).eval()
    return seqlrp.explain_text(model, torch.tensor([[2, 3, 4]]))


def test_report_page_size_and_true_label_names():
    with pytest.raises(ValueError, match=r"page_size must be a positive integer \(examples per page\), got 0"):
        Report(page_size=0)
    result = _text_explanation()
    report = Report(labels=["neg", "pos"])
    report.add_text(result, 0, ["a", "b", "c"], true_label="pos")
    report.add_text(result, 0, ["a", "b", "c"], true_label=1)
    classes = [b.text for b in html5lib.parse(report.render(), namespaceHTMLElements=False).iter("b")
               if b.get("class") == "class"]
    assert classes.count("pos (1)") >= 2
    with pytest.raises(ValueError, match=r"true_label='pso' is not one of the class names \(neg, pos\)"):
        Report(labels=["neg", "pos"]).add_text(result, 0, ["a", "b", "c"], true_label="pso")
    plain = Report()
    plain.add_text(result, 0, ["a", "b", "c"], true_label="pos")
    assert "pos" in plain.render()


def test_conservation_delta_is_shown_against_the_total_relevance():
    result = _text_explanation()
    report = Report()
    report.add_text(result, 0, ["a", "b", "c"])
    page = report.render()
    delta = float(result.relevance[0].sum() - result.seed[0].sum() + result.initial_state_relevance[0])
    share = abs(delta) / float(result.relevance[0].abs().sum())
    assert f"({share:.0%} of Σ|R|)" in page
    assert "the share the biases and the\nε-stabilizers absorb" in page


def test_image_report_help_has_no_token_bullet():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
    x = torch.rand(1, 3, 2, 2)
    report = Report()
    report.add_image(seqlrp.explain(model, x, None, seqlrp.ZeroEverywhere()), 0, x[0])
    page = report.render()
    assert "Token values" not in page and "Σ relevance" in page


def test_explain_text_marks_and_counts_unknown_words(tmp_path, capsys):
    files = make_text_files(tmp_path, count=3)
    (files / "input.tsv").write_text("sentence\tlabel\ngood film 2024\t1\nbad plot\t0\n")
    args = text_args(files, tmp_path / "unused")
    text = ["explain-text", "--model", files / "model.pt", *args[args.index("--model-class"):args.index("--vocab")],
            "--vocab", files / "vocab.txt", "--input", files / "input.tsv", "--out", tmp_path / "r.html"]
    assert main([str(a) for a in text]) == 0, capsys.readouterr().err
    page = (tmp_path / "r.html").read_text()
    assert "1 word(s) not in the vocabulary, explained as &lt;unk&gt; (marked ⟨unk⟩)" in page
    assert "2024⟨unk⟩" in page and "good⟨unk⟩" not in page
