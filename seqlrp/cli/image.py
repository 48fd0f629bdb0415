"""``seqlrp explain-image``: pixel relevance of a torchvision classifier, as an HTML report."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (
    CliError,
    Formatter,
    check_label_count,
    input_file,
    load_weights,
    parse_target,
    positive_int,
    read_labels,
    report_path,
)

if TYPE_CHECKING:
    import torch

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
COMPOSITES = ("epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1", "gamma_schedule")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet, as torchvision's weights expect

EPILOG = """examples:
  seqlrp explain-image --arch resnet50 --weights resnet50.pth --images photos/ --out out/
  seqlrp explain-image --arch resnet50 --weights resnet50.pth --transform resnet50 --images photos/ --compare
  seqlrp explain-image --arch resnet18 --weights mine.pth --num-classes 3 --labels classes.txt --images x.jpg
  seqlrp explain-image --arch vgg16 --weights vgg16.pth --images a.jpg b.png --composite epsilon_plus_flat \\
      --target 243 --out report.html"""


def add_parser(sub) -> None:
    image = sub.add_parser("explain-image", help="pixel relevance of a torchvision classifier (HTML report)",
                           description="Explain a torchvision CNN (canonized: batch norms fused, explicit residual "
                           "sums) image by image and write a self-contained HTML report.",
                           epilog=EPILOG, formatter_class=Formatter)
    image.add_argument("--arch", required=True, help="torchvision architecture, e.g. resnet50, densenet121, vgg16")
    image.add_argument("--weights", required=True, help="state_dict file of that architecture (.pth)")
    image.add_argument("--num-classes", type=int, default=1000, help="output classes of the weights")
    image.add_argument("--images", required=True, nargs="+", help=f"image files or folders ({', '.join(EXTENSIONS)})")
    image.add_argument("--composite", default="epsilon_gamma_box", choices=COMPOSITES, help="LRP rule preset")
    image.add_argument("--target", help="class index to explain (default: the predicted class)")
    image.add_argument("--size", type=int, default=224,
                       help="crop size: the shorter side is resized to size·256/224, then centre-cropped "
                       "(ignored with --transform)")
    image.add_argument("--transform", metavar="ARCH",
                       help="use torchvision's evaluation transform of ARCH's default weights (resize, centre crop, "
                       "mean/std; e.g. resnet50: resize 232, crop 224) and, with 1000 classes, their class names "
                       "(default: the --size transform with the ImageNet statistics)")
    image.add_argument("--labels", metavar="FILE", help="class names, one per line in class-index order "
                       "(default: indices only, or the --transform weights' names)")
    image.add_argument("--compare", action="store_true",
                       help="show LRP, gradient × input and gradient side by side for every image")
    image.add_argument("--out", default="report.html", help="a folder (report.html inside) or a .html file path")
    image.set_defaults(func=run)


def build_model(arch: str, classes: int) -> torch.nn.Module:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        raise CliError(f"unknown architecture {arch!r}: torchvision classification models are e.g. resnet50, "
                       "densenet121, vgg16 (torchvision.models.list_models())")
    return torchvision.models.get_model(arch, weights=None, num_classes=classes)


def image_files(items: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in EXTENSIONS and f.is_file())
            if not found:
                raise CliError(f"no images ({', '.join(EXTENSIONS)}) in the folder {p}")
            files += found
        else:
            files.append(input_file(p, "image"))
    return files


@dataclass(frozen=True)
class Preprocess:
    """What the model sees: the shorter side resized to ``resize``, a centre crop ``crop × crop``, then
    ``(x - mean) / std``. Never distorts: the aspect ratio is kept until the square crop."""

    resize: int
    crop: int
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    source: str = "standard"
    categories: tuple[str, ...] | None = None

    @classmethod
    def standard(cls, size: int) -> Preprocess:
        """torchvision's classic evaluation transform: resize ``size·256/224``, crop ``size``, ImageNet stats."""
        return cls(round(size * 256 / 224), size)

    @classmethod
    def from_weights(cls, arch: str) -> Preprocess:
        """``torchvision.models.get_model_weights(arch).DEFAULT.transforms()`` (no download needed)."""
        import torchvision

        try:
            weights = torchvision.models.get_model_weights(arch).DEFAULT
        except (ValueError, KeyError):
            names = sorted(torchvision.models.list_models(module=torchvision.models))
            raise CliError(f"unknown --transform {arch!r}: name a torchvision classification architecture, one of "
                           f"{', '.join(names)}") from None
        transform = weights.transforms()
        categories = weights.meta.get("categories")
        return cls(int(transform.resize_size[0]), int(transform.crop_size[0]), tuple(transform.mean),
                   tuple(transform.std), f"{weights}.transforms()", tuple(categories) if categories else None)

    def __str__(self) -> str:
        return f"{self.source}: resize {self.resize}, centre crop {self.crop}"


def load_image(path: Path, size: int | Preprocess) -> torch.Tensor:
    """RGB in [0, 1]: shorter side resized, centre-cropped (``size``: the crop of :meth:`Preprocess.standard`,
    or a :class:`Preprocess`); no distortion."""
    preprocess = size if isinstance(size, Preprocess) else Preprocess.standard(size)
    import numpy as np
    import torch
    from PIL import Image, ImageOps, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as TF

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                picture = np.asarray(ImageOps.exif_transpose(opened).convert("RGB")).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise CliError(f"image {path} is too large to decode safely ({error})") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise CliError(f"cannot decode image {path}: {error}") from None
    tensor = torch.from_numpy(picture).permute(2, 0, 1)
    tensor = TF.resize(tensor, [preprocess.resize], antialias=True)
    return TF.center_crop(tensor, [preprocess.crop, preprocess.crop]).float() / 255


def normalize(pictures: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """Pictures in [0, 1] (``(..., 3, H, W)``) normalized (default: the ImageNet statistics)."""
    import torch

    return (pictures - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def composite(name: str, mean=MEAN, std=STD):
    """The ``--composite`` preset, its zB box from the normalization."""
    from .. import cnn

    low, high = cnn.bounds_from_normalization(mean, std)
    composites = {"epsilon_gamma_box": lambda: cnn.EpsilonGammaBox(low.float(), high.float()),
                  "epsilon_plus_flat": cnn.EpsilonPlusFlat, "epsilon_alpha2_beta1": cnn.EpsilonAlpha2Beta1,
                  "gamma_schedule": lambda: cnn.GammaSchedule(low.float(), high.float())}
    return composites[name]()


def load_model(args) -> torch.nn.Module:
    """``--arch`` with ``--num-classes`` outputs and the ``--weights`` loaded, in eval mode."""
    classes = positive_int(args.num_classes, "--num-classes")
    return load_weights(build_model(args.arch, classes), args.weights, "weights file", args.arch,
                        classes_option="--num-classes")


def class_names(args, preprocess: Preprocess) -> tuple[list[str] | None, str]:
    """``--labels`` (checked against ``--num-classes``), else the ``--transform`` weights' names when they fit."""
    labels = check_label_count(read_labels(args.labels), args.num_classes, args.labels, "--num-classes")
    if labels is not None:
        return labels, f"class names from {args.labels}"
    if preprocess.categories is not None and len(preprocess.categories) == args.num_classes:
        return list(preprocess.categories), f"class names of {preprocess.source.removesuffix('.transforms()')}"
    return None, "classes as indices (pass --labels FILE for names)"


def run(args) -> Path:
    import torch

    from .. import baselines
    from ..core import explain
    from ..viz import Report

    out = report_path(args.out)
    preprocess = Preprocess.from_weights(args.transform) if args.transform else \
        Preprocess.standard(positive_int(args.size, "--size"))
    target = parse_target(args.target)
    positive_int(args.num_classes, "--num-classes")
    labels, named = class_names(args, preprocess)
    model = load_model(args)
    files = image_files(args.images)
    pictures = torch.stack([load_image(f, preprocess) for f in files])
    inputs = normalize(pictures, preprocess.mean, preprocess.std)
    result = explain(model, inputs, target, composite(args.composite, preprocess.mean, preprocess.std), labels=labels)
    report = Report(f"seqlrp: {args.arch}", f"{len(files)} images, {args.composite}; input: {preprocess}; {named}",
                    labels=labels)
    report.section("Pixel relevance")
    if args.compare:
        explained = result.target
        others = {"gradient × input": baselines.gradient_x_input(model, inputs, explained),
                  "gradient": baselines.gradient(model, inputs, explained)}
        for i, f in enumerate(files):
            report.add_comparison({f"LRP {args.composite}": result, **others}, i, image=pictures[i], title=f.name)
    else:
        for i, f in enumerate(files):
            report.add_image(result, i, pictures[i], method=args.composite, title=f.name)
    return report.save(out)
