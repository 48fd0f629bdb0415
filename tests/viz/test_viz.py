"""Colormaps, normalization, token escaping, the report's self-containment and HTML validity."""

from __future__ import annotations

import base64
import re

import html5lib
import numpy as np
import pytest
import torch

import seqlrp
from seqlrp.viz import BWR, COLDNHOT, Report, colorize, heatmap, normalize, token_html


@pytest.mark.parametrize("cmap", [BWR, COLDNHOT])
def test_colormaps_are_symmetric_around_zero(cmap):
    values = np.arange(-100, 101) / 100  # exactly symmetric values
    rgb = colorize(values, cmap).astype(int)
    assert (rgb[100] == (np.array([255, 255, 255]) if cmap is BWR else np.array([0, 0, 0]))).all()
    # -v is the mirror of +v: red and blue swap (white/black at 0)
    assert (rgb[::-1][:, [2, 1, 0]] == rgb).all()
    if cmap is COLDNHOT:
        assert (rgb[0] == [0, 255, 255]).all() and (rgb[200] == [255, 255, 0]).all()
    # the magnitude of the colour change grows monotonically with |v| on both sides
    distance = np.abs(rgb - rgb[100]).sum(1)
    assert (np.diff(distance[100:]) >= 0).all() and (distance[:101][::-1] == distance[100:]).all()


def test_normalization_absmax_percentile_and_zero():
    r = np.array([-2.0, 1.0, 0.0, 4.0])
    np.testing.assert_allclose(normalize(r), [-0.5, 0.25, 0.0, 1.0])
    clipped = normalize(np.arange(-100, 101, dtype=float), "percentile", 50)
    assert clipped.max() == 1 and clipped.min() == -1 and clipped[100] == 0
    assert (normalize(np.zeros(5)) == 0).all()
    with pytest.raises(ValueError, match="NaN"):
        normalize(np.array([np.nan]))
    with pytest.raises(ValueError, match="absmax"):
        normalize(r, "minmax")


def test_heatmap_shape_and_signs():
    relevance = torch.zeros(3, 4, 5)
    relevance[0, 1, 1] = 1.0
    relevance[1, 2, 3] = -0.5
    rgb = heatmap(relevance)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[1, 1]) == (255, 0, 0) and rgb[2, 3, 2] == 255 and rgb[2, 3, 0] < 255
    assert tuple(rgb[0, 0]) == (255, 255, 255)


@pytest.mark.parametrize("token", ["<script>alert(1)</script>", "&amp;", '"><img src=x onerror=alert(1)>'])
def test_tokens_are_escaped(token):
    html = str(token_html(["a", token, "b"], [0.1, -0.5, 1.0]))
    assert "<script>" not in html and "<img" not in html
    dom = html5lib.parse(html, namespaceHTMLElements=False)
    words = dom.findall(".//span[@class='word']")
    assert [s.text for s in words] == ["a", token, "b"]
    assert [s.text for s in dom.findall(".//span[@class='value']")] == ["+0.100", "-0.500", "+1.00"]


def test_rtl_and_unicode_tokens_intact():
    tokens = ["שלום", "مرحبا", "naïve", "日本語", "🙂"]
    html = str(token_html(tokens, np.linspace(-1, 1, 5)))
    for t in tokens:
        assert t in html
    assert html.count('dir="auto"') == 5


def _text_explanation():
    model = seqlrp.lstm.BiLSTMClassifier(10, 4, 3, 2).double().eval()
    return seqlrp.explain_text(model, torch.tensor([[1, 2, 3], [4, 5, 0]]), lengths=torch.tensor([3, 2]))


def test_report_is_self_contained_and_parses(tmp_path):
    text = _text_explanation()
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(2 * 8 * 8, 3)).eval()
    images = torch.rand(2, 1, 8, 8)
    image = seqlrp.explain(cnn, images)
    report = Report("test <report>", page_size=2)
    report.section("text")
    for i, tokens in enumerate([["<script>alert(1)</script>", "b", "c"], ["&amp;", "e"]]):
        report.add_text(text, i, tokens, true_label=1, class_names=["neg", "pos"])
    report.add_table(["method", "score"], [["LRP", 0.5]], title="summary")
    report.section("images")
    for i in range(2):
        report.add_image(image, i, images[i], true_label=0)
    path = report.save(tmp_path / "r.html")
    html = path.read_text()
    assert "http" not in html.lower().replace("http-equiv", "")
    assert "<script>alert" not in html
    dom = html5lib.parse(html, namespaceHTMLElements=False)
    assert len(dom.findall(".//span[@class='token']")) == 5
    imgs = dom.findall(".//img")
    assert len(imgs) == 6
    for img in imgs:
        uri = img.get("src")
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test &lt;report&gt;" in html
    assert re.search(r"conservation Δ = ", html)


def test_large_report_is_paginated(tmp_path):
    text = _text_explanation()
    report = Report(page_size=50)
    report.section("many")
    for i in range(10_000):
        report.add_text(text, i % 2, ["x", "y", "z"][: 3 - i % 2])
    html = report.save(tmp_path / "big.html").read_text()
    assert html.count('class="page"') == 200
    assert html.count(" hidden>") == 199
    assert len(html) < 60_000_000


def test_grid_gives_every_heatmap_a_colorbar_in_relevance_units():
    from seqlrp.viz import grid

    maps = [torch.tensor([[0.5, -2.0], [1.0, 0.0]]), torch.zeros(2, 2), torch.tensor([[3e-4, 1e-4], [0.0, 0.0]])]
    fig = grid(maps, titles=["a", "b", "c"], ncols=2)
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == len(maps)
    # full colour at max |R| of each map: ticks -vmax .. +vmax
    for bar, vmax in zip(bars, (2.0, 1.0, 3e-4), strict=True):
        ticks = bar.get_yticks()
        assert ticks.min() == pytest.approx(-vmax) and ticks.max() == pytest.approx(vmax)
