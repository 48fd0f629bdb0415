"""The docs' notebook-style example runs (its cells in order, as a script) and writes what it says."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "notebook.py"


def test_notebook_example_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLRP_EXAMPLE_OUT", str(tmp_path))
    namespace = runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert {p.name for p in tmp_path.iterdir()} == {"tokens.png", "heatmap.png", "report.html"}
    assert namespace["attribution"].shape == namespace["images"].shape
    assert "class=\"scale\"" in namespace["html"]
    assert EXAMPLE.read_text().count("# %%") >= 6
