"""Notebook views: ``Explanation._repr_html_`` (self-contained HTML, PNGs as base64) and :func:`show` (matplotlib).

In Jupyter, an explanation as the last expression of a cell shows its tokens (text), words (a Hugging Face model's
``TransformerExplanation``: word pieces merged, special tokens grey) or heatmaps (images), each with a numeric
colour scale; ``seqlrp.viz.show(explanation, index)`` draws one example as a
matplotlib figure with a colorbar.
"""

from __future__ import annotations

import numpy as np
from markupsafe import escape

from ..core.checks import check_index
from ..core.labels import class_name
from .colormaps import full_scale, get_cmap
from .image import _as_map, heat_scale, heatmap, picture_rgb, png_data_uri
from .numbers import number
from .report import _is_words, _meta, _words_of
from .scale import scale_html
from .text import token_html

#: the notebook view's style, scoped to ``.seqlrp`` so it leaves the notebook's own style alone
STYLE = """<style>
.seqlrp .ex { margin: 0.4em 0 0.8em 0; font-family: system-ui, sans-serif; }
.seqlrp .meta { font-size: 0.85em; color: #444; margin-bottom: 0.2em; }
.seqlrp .tokens { display: flex; flex-wrap: wrap; gap: 0.25em; line-height: 1.5; }
.seqlrp .token { padding: 0.05em 0.3em; border-radius: 3px; border: 1px solid #ddd; display: inline-flex;
  flex-direction: column; align-items: center; unicode-bidi: isolate; }
.seqlrp .token .value { font-size: 0.72em; }
.seqlrp .token.special { border-style: dashed; border-color: #999; font-style: italic; }
.seqlrp .embeddings { font-size: 0.8em; color: #444; }
.seqlrp .scale { display: inline-block; position: relative; width: 240px; margin: 0.4em 2em 0.2em 2em;
  font-size: 0.72em; }
.seqlrp .scale .bar { display: block; height: 10px; border: 1px solid #999; }
.seqlrp .scale .ticks { display: block; position: relative; height: 1.3em; }
.seqlrp .scale .tick { position: absolute; transform: translateX(-50%); white-space: nowrap; }
.seqlrp .scale .caption { display: block; color: #555; }
.seqlrp img { height: 128px; width: auto; image-rendering: pixelated; border: 1px solid #ccc; }
</style>"""


def _is_text(explanation) -> bool:
    """Token ids through an embedding (a TextExplanation); a Hugging Face explanation is drawn word by word."""
    return getattr(explanation, "token_relevance", None) is not None and not _is_words(explanation)


def _is_image(explanation) -> bool:
    return explanation.relevance.dim() in (3, 4) and not _is_text(explanation) and not _is_words(explanation)


def _tokens(explanation, index: int) -> tuple[list[str], np.ndarray]:
    values = explanation.token_relevance[index]
    if getattr(explanation, "lengths", None) is not None:
        values = values[: int(explanation.lengths[index])]
    values = values.detach().cpu().double().numpy()
    tokens = explanation.tokens[index] if getattr(explanation, "tokens", None) is not None else None
    if tokens is None or len(tokens) != len(values):
        tokens = [str(i) for i in range(len(values))]
    return list(tokens), values


def _example_html(explanation, index: int, cmap) -> str:
    classes = _meta(explanation, index, None, getattr(explanation, "labels", None))
    meta = (f"example {index} · explained: <b>{escape(classes['explained'])}</b> "
            f"(p = {classes['probability']}) · predicted: {escape(classes['predicted'])}"
            f" · Σ relevance = {number(float(explanation.relevance[index].sum()))}")
    caption = "per-example scale: full colour = max |R| of this example"
    if _is_text(explanation):
        tokens, values = _tokens(explanation, index)
        vmax = full_scale(values)
        body = str(token_html(tokens, values, cmap, vmax=vmax))
    elif _is_words(explanation):
        words, values, special = _words_of(explanation, index)
        vmax = full_scale(values[~special])
        body = str(token_html(words, values, cmap, vmax=vmax, special=special))
        shares = " · ".join(f"<code>{escape(name)}</code> = {number(float(share[index].sum()))}"
                            for name, share in explanation.embedding_shares.items())
        if shares:
            body += f'<div class="embeddings">relevance reaching the position / token-type embeddings: {shares}</div>'
        if special.any():
            caption += " (of the words; special tokens grey)"
    elif _is_image(explanation):
        vmax = heat_scale(explanation.relevance[index])
        body = f'<img alt="relevance" src="{png_data_uri(heatmap(explanation.relevance[index], cmap, vmax=vmax))}">'
    else:  # a vector input: one chip per feature
        values = explanation.relevance[index].detach().cpu().double().numpy().ravel()
        vmax = full_scale(values)
        body = str(token_html([f"x{i}" for i in range(len(values))], values, cmap, vmax=vmax))
    return f'<div class="ex"><div class="meta">{meta}</div>{body}{scale_html(cmap, vmax, caption)}</div>'


def explanation_html(explanation, max_examples: int = 8, cmap="bwr") -> str:
    """Self-contained HTML of the first ``max_examples`` examples (tokens with values, or heatmaps), each
    with its numeric colour scale; what ``Explanation._repr_html_`` returns."""
    count = explanation.output.shape[0]
    shown = min(count, max_examples)
    parts = [_example_html(explanation, i, cmap) for i in range(shown)]
    if count > shown:
        parts.append(f'<div class="meta">… and {count - shown} more (seqlrp.viz.show(result, index) or '
                     'seqlrp.viz.Report)</div>')
    kind = "token" if _is_text(explanation) else "word" if _is_words(explanation) else \
        "pixel" if _is_image(explanation) else "feature"
    head = (f'<div class="meta">{type(explanation).__name__}: {kind} relevance of {count} example(s); red = for the '
            "explained class, blue = against</div>")
    return str(STYLE + '<div class="seqlrp">' + head + "".join(parts) + "</div>")  # (plain str, not Markup)


def show(explanation, index: int = 0, image=None, cmap="bwr", ax=None):
    """One example as a matplotlib figure: the heatmap (beside ``image`` when given) or the token relevance as
    bars, with a colorbar in relevance units (full colour = ``max |R|`` of the example). Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    index = check_index(index, explanation.target.shape[0])
    colormap = get_cmap(cmap)
    target = int(explanation.target[index])
    title = f"explained: {class_name(getattr(explanation, 'labels', None), target)}"
    if _is_image(explanation):
        vmax = heat_scale(explanation.relevance[index]) or 1.0
        panels = 2 if image is not None else 1
        if ax is None:
            fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels + 0.8, 3.2), squeeze=False)
            axes = list(axes[0])
        else:
            fig, axes = ax.figure, [ax]
        if image is not None and len(axes) > 1:
            axes[0].imshow(picture_rgb(image))
            axes[0].set_title("input", fontsize=9)
            axes[0].axis("off")
        target_ax = axes[-1]
        target_ax.imshow(_as_map(explanation.relevance[index]), cmap=colormap, vmin=-vmax, vmax=vmax)
        target_ax.set_title(title, fontsize=9)
        target_ax.axis("off")
    else:
        if _is_words(explanation):
            tokens, values, _ = _words_of(explanation, index)
        else:
            tokens, values = _tokens(explanation, index) if _is_text(explanation) else (
                None, explanation.relevance[index].detach().cpu().double().numpy().ravel())
        tokens = tokens or [f"x{i}" for i in range(len(values))]
        vmax = full_scale(values) or 1.0
        if ax is None:
            fig, target_ax = plt.subplots(figsize=(max(4.0, 0.45 * len(values) + 1.5), 3.0))
        else:
            fig, target_ax = ax.figure, ax
        target_ax.bar(range(len(values)), values, color=colormap((np.clip(values / vmax, -1, 1) + 1) / 2),
                      edgecolor="#555", linewidth=0.5)
        target_ax.axhline(0, color="grey", lw=0.5)
        target_ax.set_xticks(range(len(values)), tokens, rotation=60, fontsize=8)
        target_ax.set_ylabel("relevance")
        target_ax.set_title(title, fontsize=9)
    colorbar = fig.colorbar(ScalarMappable(Normalize(-vmax, vmax), colormap), ax=target_ax, shrink=0.8)
    colorbar.set_label("relevance (per-example scale)", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["explanation_html", "show"]
