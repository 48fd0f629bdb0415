"""Readable reports in a real browser (headless Chromium, 1400 px wide): DOM checks after the page ran (every
heatmap has a numeric scale, every token shows its value once the toggle is on, every class has a name, images
keep their aspect) and a pixel check of a non-square input in the screenshot.

Skipped with a message without Debian's chromium (``make browser`` installs it when it can). Run as a script
(``python -m tests.viz.test_browser_readable``) it writes the screenshots of docs/reports.md to docs/img/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.viz import Report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
WIDTH = 1400

#: run in the page after load: tick the toggle, then measure what the reader sees
CHECK = """<script>
window.addEventListener('load', function () {
  var toggle = document.getElementById('show-values');
  if (toggle) { toggle.checked = true; toggle.dispatchEvent(new Event('change')); }
  var visible = function (e) { var r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  var out = {tokens: 0, values_shown: 0, heats: 0, heats_with_scale: 0, ticks: [], classes: [], images: []};
  document.querySelectorAll('.token').forEach(function (t) {
    out.tokens += 1;
    var v = t.querySelector('.value');
    if (v && visible(v) && /^[+-]?[0-9]/.test(v.textContent)) { out.values_shown += 1; }
  });
  document.querySelectorAll('.heat').forEach(function (h) {
    out.heats += 1;
    var s = h.querySelector('.scale');
    if (s && visible(s.querySelector('.bar'))) {
      out.heats_with_scale += 1;
      out.ticks.push(Array.from(s.querySelectorAll('.tick')).map(function (t) { return t.textContent; }));
    }
  });
  document.querySelectorAll('b.class').forEach(function (b) { out.classes.push(b.textContent); });
  document.querySelectorAll('img.example-image').forEach(function (i) {
    var r = i.getBoundingClientRect();
    out.images.push([i.naturalWidth, i.naturalHeight, r.width, r.height]);
  });
  var pre = document.createElement('pre'); pre.id = 'check'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

GREEN = (0, 255, 0)


def text_report() -> Report:
    torch.manual_seed(0)
    vocabulary = ["<pad>", "the", "film", "was", "very", "good", "bad", "plot", "and", "acting"]
    model = seqlrp.lstm.BiLSTMClassifier(len(vocabulary), 8, 6, 2).double().eval()
    sentences = [["the", "film", "was", "very", "good", "and", "the", "acting", "was", "good"],
                 ["the", "plot", "was", "bad"]]
    ids = torch.tensor([[vocabulary.index(w) for w in sentences[0]],
                        [vocabulary.index(w) for w in sentences[1]] + [0] * 6])
    lengths = torch.tensor([10, 4])
    lrp = seqlrp.explain_text(model, ids, lengths=lengths, labels=["negative", "positive"])
    report = Report("seqlrp report: text", "a BiLSTM on two sentences")
    report.section("Token relevance")
    for i, sentence in enumerate(sentences):
        report.add_text(lrp, i, sentence, true_label=1 - i, title=f"sentence {i + 1}")
    report.add_comparison({"LRP ε=0.001": lrp,
                           "gradient × input": seqlrp.baselines.text_gradient_x_input(model, ids, lrp.target,
                                                                                      lengths=lengths),
                           "gradient² (sensitivity)": seqlrp.baselines.text_gradient(model, ids, lrp.target,
                                                                                     lengths=lengths)},
                          0, sentences[0], true_label=1, title="sentence 1: three explainers")
    return report


def image_report() -> tuple[Report, torch.Tensor]:
    """A non-square input (48 x 32) whose left part is pure green: its rendered shape is measurable."""
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 16 * 24, 3)).eval()
    images = torch.rand(1, 3, 32, 48)
    images[0, :, :, :] = torch.tensor(GREEN, dtype=torch.float32).view(3, 1, 1) / 255
    images[0, :, 8:24, 30:44] = torch.rand(3, 16, 14)  # some texture for the heatmap, right of the green part
    result = seqlrp.explain(cnn, images, composite=seqlrp.cnn.EpsilonPlusFlat(), labels=["cat", "dog", "bird"])
    report = Report("seqlrp report: images", "a small CNN on a 48 × 32 input")
    report.section("Pixel relevance")
    report.add_image(result, 0, images[0], true_label=2, title="a wide image")
    report.add_comparison({"LRP EpsilonPlusFlat": result,
                           "gradient × input": seqlrp.baselines.gradient_x_input(cnn, images, result.target),
                           "gradient": seqlrp.baselines.gradient(cnn, images, result.target)},
                          0, image=images[0], true_label=2, title="three explainers")
    return report, images


def _write(report: Report, path: Path, check: bool) -> Path:
    html = report.render()
    path.write_text(html.replace("</body>", CHECK + "</body>") if check else html)
    return path


def _chromium(path: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args,
                           path.as_uri()], capture_output=True, text=True, timeout=120)


def measure(report: Report, tmp: Path) -> dict:
    page = _write(report, tmp / "check.html", check=True)
    dom = _chromium(page, tmp / "profile", f"--window-size={WIDTH},1000", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    start = dom.stdout.index('<pre id="check">') + len('<pre id="check">')
    return json.loads(dom.stdout[start:dom.stdout.index("</pre>", start)].replace("&amp;", "&"))


def screenshot(report: Report, path: Path, profile: Path, height: int = 1000) -> np.ndarray:
    page = _write(report, path.with_suffix(".html"), check=False)
    shot = _chromium(page, profile, f"--window-size={WIDTH},{height}", f"--screenshot={path}")
    assert shot.returncode == 0 and path.exists(), shot.stderr[-2000:]
    return matplotlib.image.imread(str(path))[..., :3]


@pytest.fixture(scope="module")
def chromium():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium as root); browser check skipped")
    return CHROMIUM


def _check_common(seen: dict) -> None:
    assert seen["heats"] > 0 and seen["heats_with_scale"] == seen["heats"], seen
    for ticks in seen["ticks"]:
        assert len(ticks) == 5 and ticks[2] == "0" and all(t.strip() for t in ticks)
        assert float(ticks[4].lstrip("+≥ ")) > 0
    assert seen["classes"] and all(c == "not given" or " (" in c for c in seen["classes"]), seen["classes"]
    for natural_w, natural_h, shown_w, shown_h in seen["images"]:
        assert abs(shown_w / shown_h - natural_w / natural_h) < 0.02, (natural_w, natural_h, shown_w, shown_h)


def test_text_section_in_the_browser(chromium, tmp_path):
    seen = measure(text_report(), tmp_path)
    _check_common(seen)
    assert seen["tokens"] == 10 + 4 + 3 * 10
    assert seen["values_shown"] == seen["tokens"]  # every token shows its value once the toggle is on
    assert seen["heats"] == 2 + 3
    assert {c.split(" (")[0] for c in seen["classes"]} <= {"negative", "positive"}
    pixels = screenshot(text_report(), tmp_path / "text.png", tmp_path / "profile")
    assert pixels.shape[1] == WIDTH and pixels.std() > 0.05


def test_image_section_keeps_the_aspect_in_the_browser(chromium, tmp_path):
    report, images = image_report()
    seen = measure(report, tmp_path)
    _check_common(seen)
    assert seen["heats"] == 1 + 3 and seen["tokens"] == 0
    assert "bird (2)" in seen["classes"]
    assert {c.split(" (")[0] for c in seen["classes"]} <= {"cat", "dog", "bird"}
    assert [img[:2] for img in seen["images"] if img[:2] == [48, 32]], "the 48 x 32 input is missing"
    # pixel check: the input (pure green but for a textured patch) is drawn 48:32, not squashed to a square
    from scipy import ndimage

    pixels = (screenshot(report, tmp_path / "images.png", tmp_path / "profile", 1400) * 255).round().astype(int)
    green = np.abs(pixels - np.array(GREEN)).sum(-1) <= 6
    components, count = ndimage.label(green)
    assert count >= 1
    sizes = ndimage.sum(green, components, range(1, count + 1))
    first = int(np.argmax(sizes >= 0.5 * sizes.max())) + 1  # the top-most large green area: the first input
    rows, cols = np.nonzero(components == first)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert height >= 100 and abs(width / height - 48 / 32) < 0.03, (width, height)

def write_docs_screenshots(folder: Path) -> None:
    """docs/img/report-text.png and docs/img/report-images.png: small (palette PNG, 1000 px wide)."""
    import tempfile

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text = text_report()
        text.show_values = True
        for name, report, height in [("report-text", text, 1150), ("report-images", image_report()[0], 1250)]:
            screenshot(report, tmp / f"{name}.png", tmp / "profile", height)
            with Image.open(tmp / f"{name}.png") as shot:
                small = shot.convert("RGB").resize((1000, round(shot.height * 1000 / shot.width)), Image.LANCZOS)
                small.quantize(colors=96).save(folder / f"{name}.png", optimize=True)


if __name__ == "__main__":
    write_docs_screenshots(Path(__file__).parents[2] / "docs" / "img")
