"""Notebook views: ``_repr_html_`` of explanations (self-contained, scales, names) and ``seqlrp.viz.show``."""

from __future__ import annotations

import base64

import html5lib
import matplotlib
import torch
from torch import nn

import seqlrp
from seqlrp.viz import number, show


def _text():
    torch.manual_seed(0)
    model = seqlrp.lstm.BiLSTMClassifier(10, 4, 3, 2).double().eval()
    return seqlrp.explain_text(model, torch.tensor([[1, 2, 3], [4, 5, 6]]), tokens=[["a", "<b>", "c"], ["d", "e", "f"]],
                               labels=["neg", "pos"])


def _image():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 8 * 12, 3)).eval()
    return seqlrp.explain(cnn, torch.rand(10, 3, 8, 12), labels=["cat", "dog", "bird"])


def test_text_explanation_shows_tokens_values_scale_and_names():
    text = _text()
    html = text._repr_html_()
    assert "http" not in html and "<b>" not in html.replace("<b>pos", "").replace("<b>neg", "")
    dom = html5lib.parse(html, namespaceHTMLElements=False)
    words = [s.text for s in dom.iter("span") if s.get("class") == "word"]
    values = [s.text for s in dom.iter("span") if s.get("class") == "value"]
    assert words == ["a", "<b>", "c", "d", "e", "f"]
    assert values == [number(float(v), signed=True) for v in text.token_relevance.flatten()]
    scales = [d for d in dom.iter("div") if d.get("class") == "scale"]
    assert [s.get("data-vmax") for s in scales] == [number(float(r.abs().max())) for r in text.token_relevance]
    assert all(b.text.split(" (")[0] in {"neg", "pos"} for b in dom.iter("b"))


def test_image_explanation_shows_heatmaps_inline():
    image = _image()
    dom = html5lib.parse(image._repr_html_(), namespaceHTMLElements=False)
    images = dom.findall(".//img")
    assert len(images) == 8  # the first eight; the rest is counted
    for img in images:
        assert base64.b64decode(img.get("src").split(",", 1)[1])[:4] == b"\x89PNG"
    assert len([d for d in dom.iter("div") if d.get("class") == "scale"]) == 8
    assert "and 2 more" in image._repr_html_()


def test_show_draws_a_colorbar_in_relevance_units():
    image = _image()
    fig = show(image, 1, image=torch.rand(3, 8, 12))
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 3  # input, heatmap, colorbar
    colorbar = fig.axes[-1]
    vmax = float(image.relevance[1].sum(0).abs().max())
    assert abs(max(abs(v) for v in colorbar.get_ylim()) - vmax) < 1e-6 * max(vmax, 1)
    fig = show(_text(), 0)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "<b>", "c"]
    matplotlib.pyplot.close("all")
