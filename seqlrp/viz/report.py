"""One self-contained HTML report (jinja2 template shipped with the package; images as base64 PNG).

>>> report = Report("my model", labels=["neg", "pos"])
>>> report.add_text(explanation, 0, tokens=["a", "good", "film"])
>>> report.add_comparison({"LRP": lrp, "gradient × input": gxi}, 0, tokens=["a", "good", "film"])
>>> report.add_text(seqlrp.explain_text(hf_model, tokenizer(sentences, return_tensors="pt")), 0)  # words
>>> report.save("report.html")

A Hugging Face explanation (:class:`seqlrp.transformers.TransformerExplanation`) is shown word by word (its
``.words``): special tokens ([CLS], [SEP]) grey, and the relevance that reached the position / token-type
embeddings in the panel beside Δ.

Every token and heatmap is drawn with a numeric colour scale: per example (``scale="per-example"``, the
default: full colour = ``max |R|`` of that example) or shared (``scale="shared"``: one scale per section
and method, so colours compare across examples). Each scale says which it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jinja2 import Environment, PackageLoader, select_autoescape

from ..core.checks import check_index
from ..core.labels import class_name
from ..files import atomic_write
from .colormaps import full_scale
from .image import _as_map, figure_data_uri, heat_scale, heatmap, overlay, picture_rgb, png_data_uri, to_uint8
from .numbers import number
from .scale import scale_html
from .text import token_html

SCALES = ("per-example", "shared")


@dataclass
class _Section:
    title: str
    text: str | None = None
    table: dict | None = None
    figures: list[dict] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    pages: list[list[dict]] = field(default_factory=list)


def _names(explanation, class_names):
    return class_names if class_names is not None else getattr(explanation, "labels", None)


def _panel(explanation, index: int, method: str) -> dict[str, Any]:
    """The numbers of one explanation of one example: Σ relevance, the explained logit, the conservation Δ and the
    relevance that reached each parameter (``explanation.parameter_relevance``) and each position / token-type
    embedding table (``explanation.embedding_shares``, Hugging Face models); Δ counts both as received."""
    relevance_sum = float(explanation.relevance[index].sum())
    target = int(explanation.target[index])
    logit = float(explanation.output[index, target])
    if explanation.seed is not None:
        seed = float(explanation.seed[index].sum())
        delta = relevance_sum - seed
        initial = getattr(explanation, "initial_state_relevance", None)
        if initial is not None:
            delta += float(initial[index])
    else:
        seed = delta = None
    parameters = {name: float(values[index]) for name, values in getattr(explanation, "parameter_relevance",
                                                                          {}).items()}
    embeddings = {name: float(values[index].sum()) for name, values in getattr(explanation, "embedding_shares",
                                                                                 {}).items()}
    if delta is not None:
        delta += sum(parameters.values()) + sum(embeddings.values())
    magnitude = float(explanation.relevance[index].abs().sum())
    share = f"{abs(delta) / magnitude:.0%} of Σ|R|" if delta is not None and magnitude > 0 else None
    return {"method": method, "relevance_sum": number(relevance_sum), "seed": None if seed is None else number(seed),
            "logit": number(logit), "delta": None if delta is None else number(delta), "delta_share": share,
            "coverage": list(explanation.coverage.rules.items()),
            "parameters": [(name, number(value)) for name, value in parameters.items()],
            "embeddings": [(name, number(value)) for name, value in embeddings.items()]}


def _true_label(true_label, names) -> str:
    """A class index (shown as ``name (index)``) or a class name as written (``"pos"``; with names, it must be
    one of them)."""
    if isinstance(true_label, str):
        if names is not None and true_label not in names:
            raise ValueError(f"true_label={true_label!r} is not one of the class names ({', '.join(names)}); pass the "
                             "class index or one of the names")
        return f"{true_label} ({list(names).index(true_label)})" if names is not None else true_label
    if true_label is not None and (isinstance(true_label, bool) or not isinstance(true_label, (int, np.integer))
                                   and not (isinstance(true_label, torch.Tensor) and true_label.numel() == 1)):
        raise ValueError(f"true_label must be a class index or a class name, got {true_label!r}")
    return class_name(names, true_label)


def _meta(explanation, index: int, true_label, names) -> dict[str, Any]:
    output = explanation.output[index]
    target = int(explanation.target[index])
    probability = float(torch.softmax(output.double(), -1)[target])
    return {"true_label": _true_label(true_label, names), "predicted": class_name(names, int(output.argmax())),
            "explained": class_name(names, target), "probability": number(probability)}


def _tokens_of(explanation, index: int, tokens):
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
    return list(tokens), relevance.detach().cpu().double().numpy()


def _is_words(explanation) -> bool:
    """A Hugging Face text explanation (``TransformerExplanation``): shown word by word."""
    return hasattr(explanation, "embedding_shares") and hasattr(explanation, "attention_mask")


def _words_of(explanation, index: int, tokens=None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The words of example ``index`` (texts, relevance, special flags): ``explanation.words`` (word pieces merged,
    special tokens apart); without them (a batch without ``word_ids()``) the tokens, padding left out.
    ``tokens``: other texts to show, one per word."""
    words = explanation.words[index] if explanation.words is not None else None
    if words is not None:
        texts = [w.text for w in words]
        values = np.array([w.relevance for w in words], np.float64)
        special = np.array([w.special for w in words], bool)
    else:
        kept = explanation.attention_mask[index].bool().cpu()
        values = explanation.relevance[index].detach().cpu().double()[kept].numpy()
        names = explanation.tokens[index] if explanation.tokens is not None else None
        positions = kept.nonzero().flatten().tolist()
        texts = [names[p] if names is not None else str(p) for p in positions]
        special = explanation.special[index].cpu()[kept].numpy() if explanation.special is not None \
            else np.zeros(len(values), bool)
    if tokens is not None:
        if len(tokens) != len(texts):
            raise ValueError(f"example {index} has {len(texts)} words (special tokens included) but {len(tokens)} "
                             "tokens were given; leave tokens= out to show the explanation's own words")
        texts = [str(t) for t in tokens]
    return texts, values, special


def _text_scale(panel: dict) -> float:
    """Full colour of a token row: max |R| of its tokens that are not special (grey)."""
    special = panel.get("special")
    return full_scale(panel["values"] if special is None else panel["values"][~special])


def _picture(image) -> np.ndarray:
    picture = image.detach().cpu().double().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, float)
    return picture


class Report:
    """Collects explained examples, tables and figures; renders one self-contained HTML file.

    Parameters
    ----------
    title, subtitle : str
        The report's heading.
    cmap : str or Colormap
        ``"bwr"`` (default) or ``"coldnhot"``.
    page_size : int
        Examples per page of a section.
    labels : sequence of str, optional
        Class names (one per class), shown wherever a class appears; ``class_names=`` of an ``add_*`` call,
        or an explanation's ``.labels``, take precedence.
    scale : {"per-example", "shared"}
        The colour scale: full colour at each example's ``max |R|``, or one scale per section and method.
    show_values : bool
        Show each token's value under it when the report opens (the "show values" toggle's initial state).
    """

    def __init__(self, title: str = "seqlrp report", subtitle: str = "", cmap: str = "bwr", page_size: int = 50, *,
                 labels: Sequence[str] | None = None, scale: str = "per-example", show_values: bool = False):
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive integer (examples per page), got {page_size!r}")
        self.title, self.subtitle, self.cmap, self.page_size = title, subtitle, cmap, page_size
        self.labels = None if labels is None else [str(name) for name in labels]
        self.scale, self.show_values = scale, show_values
        self.sections: list[_Section] = []

    def section(self, title: str, text: str | None = None) -> _Section:
        """Start a new section; later ``add_*`` calls fill it."""
        self.sections.append(_Section(title, text))
        return self.sections[-1]

    def _current(self) -> _Section:
        return self.sections[-1] if self.sections else self.section("Examples")

    def _names(self, explanation, class_names):
        names = _names(explanation, class_names)
        return names if names is not None else self.labels

    def add_text(self, explanation, index: int, tokens: list[str] | None = None, *, true_label=None,
                 class_names=None, method: str = "LRP", title: str | None = None) -> None:
        """One explained sentence: tokens colored by relevance, their values on demand, a numeric colour scale.

        A Hugging Face explanation (``seqlrp.explain_text`` of a tokenizer's output) is shown word by word
        (``explanation.words``): special tokens grey (their relevance in the tooltip, counted in Σ relevance), the
        relevance reaching the position / token-type embeddings beside Δ; ``tokens`` (optional) replaces the
        words' texts, one per word."""
        self.add_comparison({method: explanation}, index, tokens, true_label=true_label, class_names=class_names,
                            title=title or f"example {index}")

    def add_image(self, explanation, index: int, image, *, true_label=None, class_names=None,
                  method: str = "LRP", title: str | None = None, normalization: str = "absmax") -> None:
        """One explained image: the input as the model sees it, the heatmap with its scale, the overlay."""
        self.add_comparison({method: explanation}, index, image=image, true_label=true_label,
                            class_names=class_names, title=title or f"image {index}", normalization=normalization)

    def add_comparison(self, explanations: Mapping[str, Any], index: int, tokens: list[str] | None = None, *,
                       image=None, true_label=None, class_names=None, title: str | None = None,
                       normalization: str = "absmax") -> None:
        """Several explainers of the same example side by side (e.g. LRP, gradient × input, gradient).

        ``explanations``: method name -> explanation of the same inputs (text explanations with
        ``.token_relevance``, or image / vector explanations with ``image=`` the input drawn once). Each
        method has its own colour scale (their units differ).
        """
        if not explanations:
            raise ValueError("explanations is empty; pass {method name: explanation}")
        first = next(iter(explanations.values()))
        index = check_index(index, first.output.shape[0])
        names = self._names(first, class_names)
        panels = []
        for method, explanation in explanations.items():
            if explanation.output.shape[0] != first.output.shape[0]:
                raise ValueError(f"explanation {method!r} has {explanation.output.shape[0]} samples but "
                                 f"{next(iter(explanations))!r} has {first.output.shape[0]}; explain the same inputs")
            panel = _panel(explanation, index, str(method))
            if _is_words(explanation):  # (before token_relevance: a TransformerExplanation has that name too)
                panel["tokens"], panel["values"], panel["special"] = _words_of(explanation, index, tokens)
            elif getattr(explanation, "token_relevance", None) is not None:
                panel["tokens"], panel["values"] = _tokens_of(explanation, index, tokens)
            else:
                if image is None:
                    raise ValueError("add_image / add_comparison of an image explanation needs image= (the input "
                                     "as the model sees it, (C, H, W))")
                panel["map"] = _as_map(explanation.relevance[index])
                panel["normalization"] = normalization
            panels.append(panel)
        section = self._current()
        section.examples.append({
            "id": f"ex{len(section.examples)}", "title": title or f"example {index}",
            **_meta(first, index, true_label, names), "panels": panels,
            "picture": None if image is None else _picture(image),
        })

    def add_table(self, header: list[str], rows: list[list], title: str | None = None, *,
                  contexts: bool = False) -> None:
        """A table; floats are written with the report's one number format (three significant digits).
        ``contexts``: its cells hold coloured token windows (each scaled to its own largest |R|)."""
        section = self.section(title) if title else self._current()
        section.table = {"header": header, "rows": [[_cell(c) for c in row] for row in rows], "contexts": contexts}

    def add_figure(self, fig, title: str = "") -> None:
        self._current().figures.append({"title": title, "uri": figure_data_uri(fig)})

    # ------------------------------------------------------------------------------------------ rendering
    def _shared_scales(self, section: _Section) -> dict[tuple[str, str], float]:
        scales: dict[tuple[str, str], float] = defaultdict(float)
        for example in section.examples:
            for panel in example["panels"]:
                if "values" in panel:
                    magnitude = _text_scale(panel)
                    scales["text", panel["method"]] = max(scales["text", panel["method"]], magnitude)
                elif "map" in panel:
                    magnitude = heat_scale(panel["map"], panel["normalization"])
                    scales["image", panel["method"]] = max(scales["image", panel["method"]], magnitude)
        return scales

    def _draw(self, example: dict, shared: dict | None, count: int) -> dict:
        panels = []
        comparison = len(example["panels"]) > 1
        for panel in example["panels"]:
            drawn = {k: v for k, v in panel.items() if k not in ("values", "map", "tokens", "special")}
            kind = "text" if "values" in panel else "image"
            if shared is not None:
                vmax = shared[kind, panel["method"]]
                caption = f"shared scale: one for the {count} examples of this section ({panel['method']})"
            elif kind == "text":
                vmax = _text_scale(panel)
                caption = "per-example scale: full colour = max |R| of this example" + (
                    " and method" if comparison else "")
            else:
                vmax = heat_scale(panel["map"], panel["normalization"])
                caption = ("per-example scale: full colour = " + ("max |R|" if panel["normalization"] == "absmax"
                           else "a high percentile of |R| (larger values clipped)") + " of this image"
                           + (" and method" if comparison else ""))
            if kind == "text" and panel.get("special") is not None and panel["special"].any():
                caption += " (of the words: special tokens are grey)"
            clipped = kind == "image" and shared is None and panel["normalization"] == "percentile"
            drawn["scale"] = scale_html(self.cmap, vmax, caption, clipped=clipped)
            if kind == "text":
                drawn["tokens"] = token_html(panel["tokens"], panel["values"], self.cmap, vmax=vmax,
                                             special=panel.get("special"))
            else:
                heat = heatmap(panel["map"], self.cmap, vmax=vmax)
                drawn["images"] = [{"title": "relevance", "uri": png_data_uri(heat)}]
                if example["picture"] is not None:
                    drawn["images"].append({"title": "overlay", "uri": png_data_uri(overlay(example["picture"], heat))})
            panels.append(drawn)
        inputs = []
        if example["picture"] is not None:
            picture = to_uint8(picture_rgb(example["picture"]))
            height, width = picture.shape[:2]
            inputs.append({"title": f"input as the model sees it ({width}×{height})", "uri": png_data_uri(picture),
                           "input": True})
            if not comparison:  # the input beside its heatmap
                panels[0]["images"] = inputs + panels[0]["images"]
                inputs = []
        return {**{k: v for k, v in example.items() if k not in ("panels", "picture")}, "panels": panels,
                "inputs": inputs, "comparison": comparison}

    def render(self) -> str:
        env = Environment(loader=PackageLoader("seqlrp.viz", "templates"), autoescape=select_autoescape(["j2", "html"]))
        sections = []
        for section in self.sections:
            shared = self._shared_scales(section) if self.scale == "shared" else None
            drawn = [self._draw(example, shared, len(section.examples)) for example in section.examples]
            sections.append({"title": section.title, "text": section.text, "table": section.table,
                             "figures": section.figures,
                             "pages": [drawn[i:i + self.page_size] for i in range(0, len(drawn), self.page_size)]})
        return env.get_template("report.html.j2").render(
            title=self.title, subtitle=self.subtitle, sections=sections, show_values=self.show_values,
            scale=self.scale, has_tokens=any("tokens" in p for s in self.sections for e in s.examples
                                             for p in e["panels"]),
            has_examples=any(s.examples for s in self.sections),
            has_special=any(p.get("special") is not None and p["special"].any() for s in self.sections
                            for e in s.examples for p in e["panels"])
            or any('class="token special' in str(cell) for s in self.sections if s.table for row in s.table["rows"]
                   for cell in row),
            has_embeddings=any(p.get("embeddings") for s in self.sections for e in s.examples for p in e["panels"]),
            has_contexts=any(s.table and s.table.get("contexts") for s in self.sections))

    def save(self, path: str | Path) -> Path:
        """Write the report to ``path`` atomically (see :func:`seqlrp.files.atomic_write`)."""
        return atomic_write(path, self.render())

    def _repr_html_(self) -> str:
        return self.render()


def _cell(value):
    if isinstance(value, (float, np.floating, int, np.integer)) and not isinstance(value, bool):
        return number(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return number(value.item())
    return value
