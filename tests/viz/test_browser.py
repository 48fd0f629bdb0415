"""A real browser renders the demo report: token spans and images in the DOM, a non-blank screenshot.

Needs Debian's chromium (the Makefile installs it when it can); skipped with a message otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import html5lib
import matplotlib.image
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium as root); browser check skipped")
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run([sys.executable, "-m", "seqlrp.cli", "demo", "--out", str(out)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "report.html" in result.stdout
    return out / "report.html"


def test_dom_has_every_token_span_and_image(demo_report, tmp_path):
    source = html5lib.parse(demo_report.read_text(), namespaceHTMLElements=False)
    expected_tokens = len(source.findall(".//span[@class='token']"))
    expected_images = len(source.findall(".//img"))
    assert expected_tokens > 100 and expected_images >= 25
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          demo_report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = html5lib.parse(dom.stdout, namespaceHTMLElements=False)
    assert len(rendered.findall(".//span[@class='token']")) == expected_tokens
    assert len(rendered.findall(".//img")) == expected_images


def test_screenshot_is_not_blank(demo_report, tmp_path):
    shot = tmp_path / "report.png"
    result = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                             "--window-size=1100,1600", "--hide-scrollbars", demo_report.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    colors = np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colors) > 50, "the screenshot is (nearly) blank"
    assert pixels.std() > 0.05
