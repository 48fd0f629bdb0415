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


def test_docs_screenshots_are_small_and_referenced():
    docs = Path(__file__).parents[2] / "docs"
    shots = sorted((docs / "img").glob("*.png"))
    assert {p.name for p in shots} >= {"report-text.png", "report-images.png"}
    pages = "".join(page.read_text() for page in docs.glob("*.md"))
    for shot in shots:
        assert shot.stat().st_size <= 150_000, f"{shot.name} is {shot.stat().st_size} bytes"
        assert f"img/{shot.name}" in pages, f"{shot.name} is referenced by no page of docs/"
