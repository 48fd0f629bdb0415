"""Readable reports: contrast of token text, values on demand, a numeric scale per heatmap, one number format,
class names, explainer comparison."""

from __future__ import annotations

import html5lib
import numpy as np
import pytest
import torch

import seqlrp
from seqlrp.viz import BWR, COLDNHOT, Report, colorize, contrast_ratio, number, text_color, token_html


@pytest.mark.parametrize("cmap", [BWR, COLDNHOT, "bwr", "coldnhot"])
def test_token_text_passes_wcag_aa_on_every_colour_of_the_palette(cmap):
    palette = colorize(np.linspace(-1, 1, 2001), cmap)
    ratios = contrast_ratio(palette, text_color(palette))
    assert ratios.min() >= 4.5, f"worst contrast {ratios.min():.2f} at {palette[ratios.argmin()]}"
    # and the chips really carry that colour: the worst chip of a token row passes too
    html = str(token_html([str(i) for i in range(21)], np.linspace(-1, 1, 21), cmap))
    styles = [s.get("style") for s in html5lib.parse(html, namespaceHTMLElements=False).findall(".//span")
              if s.get("class") == "token"]
    for style in styles:
        background, color = (part.split(":")[1] for part in style.split(";"))
        rgb = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in (background, color)]
        assert contrast_ratio(*rgb) >= 4.5


def test_contrast_ratio_matches_wcag_reference_values():
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast_ratio((255, 255, 255), (255, 255, 255)) == pytest.approx(1.0)
    assert contrast_ratio((0, 0, 255), (255, 255, 255)) == pytest.approx(8.59, abs=0.01)  # WebAIM's checker
    assert tuple(text_color((0, 0, 255))) == (255, 255, 255) and tuple(text_color((255, 255, 0))) == (0, 0, 0)


def test_one_number_format():
    assert [number(v) for v in (1.0, 0.98, 0.1833, -2.97, 1e-5)] == ["1.00", "0.980", "0.183", "-2.97", "1.00e-05"]
    assert number(3) == "3" and number(0.5, signed=True) == "+0.500" and number(-0.0) == "0.00"


def _models():
    torch.manual_seed(0)
    text_model = seqlrp.lstm.BiLSTMClassifier(10, 4, 3, 2).double().eval()
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(2 * 32 * 48, 3)).eval()
    return text_model, cnn


def _report(scale="per-example"):
    text_model, cnn = _models()
    ids = torch.tensor([[1, 2, 3, 4], [4, 5, 6, 7]])
    lrp = seqlrp.explain_text(text_model, ids, labels=["negative", "positive"])
    images = torch.rand(2, 3, 32, 48)
    image = seqlrp.explain(cnn, images, labels=["cat", "dog", "bird"])
    report = Report("r", scale=scale)
    report.section("text")
    for i in range(2):
        report.add_text(lrp, i, ["a", "b", "c", "d"], true_label=1)
    report.add_comparison({"LRP": lrp, "gradient × input": seqlrp.baselines.text_gradient_x_input(text_model, ids),
                           "gradient": seqlrp.baselines.text_gradient(text_model, ids)}, 0, ["a", "b", "c", "d"])
    report.add_table(["method", "score", "n"], [["LRP", 1.0, 3], ["gradient", 0.1833, 10]])
    report.section("images")
    for i in range(2):
        report.add_image(image, i, images[i], true_label=2)
    return report, lrp, image


def test_every_heatmap_has_a_numeric_scale_and_every_class_a_name():
    report, lrp, image = _report()
    dom = html5lib.parse(report.render(), namespaceHTMLElements=False)
    heats = dom.findall(".//div[@class='heat text-heat']") + dom.findall(".//div[@class='heat image-heat']")
    assert len(heats) == 2 + 3 + 2
    for heat in heats:
        scales = heat.findall("div[@class='scale']")
        assert len(scales) == 1
        ticks = [t.text for t in scales[0].iter("span") if t.get("class") == "tick"]
        assert ticks[2] == "0" and ticks[0] == "-" + ticks[4][1:] and ticks[4].startswith("+")
        caption = next(s.text for s in scales[0].iter("span") if s.get("class") == "caption")
        assert "per-example" in caption
    # the text scale is the example's max |R|
    text_vmax = float(lrp.token_relevance[0].abs().max())
    assert heats[0].find("div[@class='scale']").get("data-vmax") == number(text_vmax)
    names = [b.text for b in dom.iter("b") if b.get("class") == "class"]
    assert len(names) == 3 * 5
    assert all(n.split(" (")[0] in {"negative", "positive", "cat", "dog", "bird", "not given"} for n in names)
    assert "positive (1)" in names and "bird (2)" in names


def test_shared_scale_is_one_per_section_and_method():
    report, lrp, _ = _report("shared")
    dom = html5lib.parse(report.render(), namespaceHTMLElements=False)
    text_heats = dom.findall(".//div[@class='heat text-heat']")
    vmax = [h.find("div[@class='scale']").get("data-vmax") for h in text_heats]
    shared = number(float(lrp.token_relevance.abs().max()))
    assert vmax[0] == vmax[1] == vmax[2] == shared  # the two examples and the comparison's LRP panel
    caption = next(s.text for s in text_heats[0].iter("span") if s.get("class") == "caption")
    assert caption.startswith("shared scale")


def test_values_under_tokens_and_one_number_format_in_tables():
    report, lrp, _ = _report()
    html = report.render()
    dom = html5lib.parse(html, namespaceHTMLElements=False)
    tokens = [s for s in dom.iter("span") if s.get("class") == "token"]
    assert len(tokens) == 2 * 4 + 3 * 4
    first = [s.find("span[@class='value']").text for s in tokens[:4]]
    assert first == [number(float(v), signed=True) for v in lrp.token_relevance[0]]
    cells = [td.text for td in dom.find(".//table").iter("td")]
    assert cells == ["LRP", "1.00", "3", "gradient", "0.183", "10"]
    assert 'id="show-values"' in html and "show-values" in html and "Σ relevance</b>: the sum" in html
    assert "conservation Δ</b> =" in html
    report.show_values = True
    assert '<body class="show-values">' in report.render()


def test_comparison_panels_side_by_side():
    report, _, _ = _report()
    dom = html5lib.parse(report.render(), namespaceHTMLElements=False)
    comparison = [d for d in dom.iter("div") if d.get("class") == "example comparison"]
    assert len(comparison) == 1
    methods = [s.text for s in comparison[0].iter("span") if s.get("class") == "method"]
    assert methods == ["LRP", "gradient × input", "gradient"]


def test_labels_are_checked():
    text_model, cnn = _models()
    with pytest.raises(ValueError, match="labels has 3 names but the model has 2 classes"):
        seqlrp.explain_text(text_model, torch.tensor([[1, 2]]), labels=["a", "b", "c"])
    with pytest.raises(TypeError, match="list of class names"):
        seqlrp.explain(cnn, torch.rand(1, 3, 32, 48), labels="cat")
    with pytest.raises(ValueError, match="scale must be one of"):
        Report(scale="global")


def test_non_square_image_keeps_its_shape_in_the_report():
    report, _, _ = _report()
    dom = html5lib.parse(report.render(), namespaceHTMLElements=False)
    images = [i for i in dom.iter("img") if "input-image" in (i.get("class") or "")]
    assert len(images) == 2 and images[0].get("alt") == "input as the model sees it (48×32)"
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(images[0].get("src").split(",", 1)[1]))) as picture:
        assert picture.size == (48, 32)
