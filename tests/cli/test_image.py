"""``seqlrp explain-image``: preprocessing that never distorts, --transform, --labels, --compare."""

from __future__ import annotations

import html5lib
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from seqlrp.cli import main
from seqlrp.cli.common import CliError
from seqlrp.cli.image import Preprocess, load_image


def _disc(path, height=60, width=120, radius=20):
    rows, cols = np.mgrid[:height, :width]
    inside = (rows - height / 2) ** 2 + (cols - width / 2) ** 2 <= radius ** 2
    Image.fromarray(np.where(inside, 0, 255).astype(np.uint8)).convert("RGB").save(path)
    return path


def _extent(mask):
    rows, cols = np.nonzero(mask)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_a_non_square_photo_is_cropped_not_squashed(tmp_path):
    picture = load_image(_disc(tmp_path / "wide.png"), 32)
    assert picture.shape == (3, 32, 32)
    height, width = _extent(picture[0].numpy() < 0.5)
    assert abs(height - width) <= 1, (height, width)  # a disc stays a disc (squashed it would be 11 x 21)
    scale = round(32 * 256 / 224) / 60
    assert abs(height - 40 * scale) <= 2


def test_transform_names_torchvision_weights_transforms():
    preprocess = Preprocess.from_weights("resnet50")
    expected = torchvision.models.get_model_weights("resnet50").DEFAULT.transforms()
    assert (preprocess.resize, preprocess.crop) == (expected.resize_size[0], expected.crop_size[0])
    assert preprocess.mean == tuple(expected.mean) and preprocess.std == tuple(expected.std)
    assert len(preprocess.categories) == 1000
    with pytest.raises(CliError, match="unknown --transform 'resnet5'.*resnet50"):
        Preprocess.from_weights("resnet5")


@pytest.fixture()
def setup(tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), tmp_path / "w.pth")
    _disc(tmp_path / "a.png")
    (tmp_path / "labels.txt").write_text("cat\ndog\n<bird>\n")
    (tmp_path / "two.txt").write_text("cat\ndog\n")
    return tmp_path


def _run(setup, *extra):
    return main(["explain-image", "--arch", "resnet18", "--weights", str(setup / "w.pth"), "--num-classes", "3",
                 "--images", str(setup / "a.png"), "--size", "32", "--out", str(setup / "r.html"), *extra])


def test_labels_and_comparison_in_the_image_report(setup):
    assert _run(setup, "--labels", str(setup / "labels.txt"), "--compare", "--target", "2") == 0
    dom = html5lib.parse((setup / "r.html").read_text(), namespaceHTMLElements=False)
    names = [b.text for b in dom.iter("b") if b.get("class") == "class"]
    assert names[0] == "not given" and names[2] == "<bird> (2)"
    assert names[1].split(" (")[0] in {"cat", "dog", "<bird>"}
    methods = [s.text for s in dom.iter("span") if s.get("class") == "method"]
    assert methods == ["LRP epsilon_gamma_box", "gradient × input", "gradient"]
    inputs = [i for i in dom.iter("img") if "input-image" in (i.get("class") or "")]
    assert len(inputs) == 1 and inputs[0].get("alt") == "input as the model sees it (32×32)"


def test_labels_file_with_the_wrong_count_is_one_clear_error(setup, capsys):
    assert _run(setup, "--labels", str(setup / "two.txt")) == 3
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "has 2 class names but --num-classes is 3; pass --num-classes 2 if the model " \
        "has 2 classes, else write one name per class" in error
    assert _run(setup, "--transform", "nosuchnet") == 3
    assert "unknown --transform 'nosuchnet'" in capsys.readouterr().err
