"""The report's per-example panel shows the relevance that reached each parameter (issue 25 item 4): the name and
its value for a model with a learned class token concatenated to its input, nothing for a plain CNN; Δ counts it."""

from __future__ import annotations

import warnings

import html5lib
import torch
from torch import nn

import seqlrp
from seqlrp.viz import Report
from seqlrp.viz.numbers import number
from tests.dataset.test_parameter_relevance import CONSERVING, TokenImageModel


def panels(explanation, images):
    report = Report("parameters")
    report.section("images")
    for i in range(len(images)):
        report.add_image(explanation, i, images[i], true_label=0)
    dom = html5lib.parse(report.render(), namespaceHTMLElements=False)
    return dom.findall(".//div[@class='panel']")


def text_of(element) -> str:
    return "".join(element.itertext())


def test_panel_names_each_parameter_and_its_relevance():
    model = TokenImageModel().double().eval()
    images = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seqlrp.CoverageWarning)
        result = seqlrp.explain(model, images, composite=CONSERVING)
    found = panels(result, images)
    assert len(found) == 2
    for i, panel in enumerate(found):
        shown = panel.findall(".//div[@class='meta parameters']")
        assert len(shown) == 1
        parameter = shown[0].findall(".//span[@class='parameter']")
        assert len(parameter) == 1
        value = float(result.parameter_relevance["class_token"][i])
        assert abs(value) > 1e-3
        assert text_of(parameter[0]) == f"class_token = {number(value)}"
        # Δ counts the parameter's share: with a conserving composite it is ~0, not the token's relevance
        meta = text_of(panel.find(".//div[@class='meta']"))
        delta = float(meta.split("conservation Δ = ")[1].split()[0].replace("−", "-"))
        assert abs(delta) < 1e-6 < abs(value)


def test_plain_cnn_panel_shows_no_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    images = torch.rand(2, 3, 4, 4)
    found = panels(seqlrp.explain(model, images), images)
    assert len(found) == 2
    for panel in found:
        assert panel.findall(".//div[@class='meta parameters']") == []
        assert "parameter" not in text_of(panel)
