"""One self-contained HTML report (jinja2 template shipped with the package; images as base64 PNG).

>>> report = Report("my model")
>>> report.add_text(explanation, 0, tokens=["a", "good", "film"], class_names=["neg", "pos"])
>>> report.save("report.html")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jinja2 import Environment, PackageLoader, select_autoescape

from ..files import atomic_write
from .image import figure_data_uri, heatmap, overlay, png_data_uri
from .text import legend_html, token_html


@dataclass
class _Section:
    title: str
    text: str | None = None
    table: dict | None = None
    figures: list[dict] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    pages: list[list[dict]] = field(default_factory=list)


def _label(names, index) -> str:
    if index is None:
        return "–"
    index = int(index)
    return f"{names[index]} ({index})" if names is not None and index < len(names) else str(index)


def _example_meta(explanation, index: int, true_label, class_names, method: str) -> dict[str, Any]:
    output = explanation.output[index]
    target = int(explanation.target[index])
    probability = float(torch.softmax(output.double(), -1)[target])
    relevance_sum = float(explanation.relevance[index].sum())
    if explanation.seed is not None:
        delta = relevance_sum - float(explanation.seed[index].sum())
        initial = getattr(explanation, "initial_state_relevance", None)
        if initial is not None:
            delta += float(initial[index])
    else:
        delta = None
    return {
        "true_label": _label(class_names, true_label), "predicted": _label(class_names, int(output.argmax())),
        "explained": _label(class_names, target), "probability": probability, "method": method,
        "relevance_sum": relevance_sum, "delta": delta,
        "coverage": list(explanation.coverage.rules.items()),
    }


class Report:
    """Collects explained examples, tables and figures; renders one self-contained HTML file."""

    def __init__(self, title: str = "seqlrp report", subtitle: str = "", cmap: str = "bwr", page_size: int = 50):
        self.title, self.subtitle, self.cmap, self.page_size = title, subtitle, cmap, page_size
        self.sections: list[_Section] = []

    def section(self, title: str, text: str | None = None) -> _Section:
        """Start a new section; later ``add_*`` calls fill it."""
        self.sections.append(_Section(title, text))
        return self.sections[-1]

    def _current(self) -> _Section:
        return self.sections[-1] if self.sections else self.section("Examples")

    def add_text(self, explanation, index: int, tokens: list[str] | None = None, *, true_label=None,
                 class_names=None, method: str = "LRP", title: str | None = None) -> None:
        """One explained sentence: tokens colored by relevance, with the numbers beside them."""
        relevance = explanation.token_relevance[index]
        if explanation.lengths is not None:
            relevance = relevance[: int(explanation.lengths[index])]
        if tokens is None and explanation.tokens is not None:
            tokens = explanation.tokens[index]
        if tokens is None:
            tokens = [str(i) for i in range(len(relevance))]
        if len(tokens) != len(relevance):
            raise ValueError(f"example {index} has {len(relevance)} relevance values but {len(tokens)} tokens were "
                             "given; pass exactly the explained tokens (with lengths=, padding is left out)")
        meta = _example_meta(explanation, index, true_label, class_names, method)
        section = self._current()
        section.examples.append({"id": f"ex{len(section.examples)}", "title": title or f"example {index}",
                                 "tokens": token_html(tokens, relevance, self.cmap), **meta})

    def add_image(self, explanation, index: int, image, *, true_label=None, class_names=None,
                  method: str = "LRP", title: str | None = None, normalization: str = "absmax") -> None:
        """One explained image: the input, the heatmap and the overlay (embedded PNGs)."""
        heat = heatmap(explanation.relevance[index], self.cmap, normalization)
        picture = overlay(image, heat, alpha=0.0)
        meta = _example_meta(explanation, index, true_label, class_names, method)
        section = self._current()
        section.examples.append({
            "id": f"ex{len(section.examples)}", "title": title or f"image {index}", **meta,
            "images": [{"title": "input", "uri": png_data_uri(picture)},
                       {"title": "relevance", "uri": png_data_uri(heat)},
                       {"title": "overlay", "uri": png_data_uri(overlay(image, heat))}],
        })

    def add_table(self, header: list[str], rows: list[list], title: str | None = None) -> None:
        section = self.section(title) if title else self._current()
        section.table = {"header": header, "rows": [[_cell(c) for c in row] for row in rows]}

    def add_figure(self, fig, title: str = "") -> None:
        self._current().figures.append({"title": title, "uri": figure_data_uri(fig)})

    def render(self) -> str:
        env = Environment(loader=PackageLoader("seqlrp.viz", "templates"), autoescape=select_autoescape(["j2", "html"]))
        for section in self.sections:
            section.pages = [section.examples[i:i + self.page_size]
                             for i in range(0, len(section.examples), self.page_size)]
        return env.get_template("report.html.j2").render(
            title=self.title, subtitle=self.subtitle, sections=self.sections, legend=legend_html(self.cmap))

    def save(self, path: str | Path) -> Path:
        """Write the report to ``path`` atomically (see :func:`seqlrp.files.atomic_write`)."""
        return atomic_write(path, self.render())


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return value
