"""``seqlrp explain-image``: pixel relevance of a torchvision classifier, as an HTML report."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .common import CliError, Formatter, input_file, load_weights, parse_target, positive_int, report_path

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
COMPOSITES = ("epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1", "gamma_schedule")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet, as torchvision's weights expect

EPILOG = """examples:
  seqlrp explain-image --arch resnet50 --weights resnet50.pth --images photos/ --out out/
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
                       help="crop size: the shorter side is resized to size·256/224, then centre-cropped")
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


def load_image(path: Path, size: int) -> torch.Tensor:
    """RGB in [0, 1], shorter side resized to ``size·256/224`` and centre-cropped to ``size`` (no distortion)."""
    import numpy as np
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
    tensor = TF.resize(tensor, [round(size * 256 / 224)], antialias=True)
    return TF.center_crop(tensor, [size, size]).float() / 255


def normalize(pictures: torch.Tensor) -> torch.Tensor:
    """Pictures in [0, 1] (``(..., 3, H, W)``) normalized with the ImageNet statistics."""
    return (pictures - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def composite(name: str):
    """The ``--composite`` preset, its zB box from the ImageNet normalization."""
    from .. import cnn

    low, high = cnn.bounds_from_normalization(MEAN, STD)
    composites = {"epsilon_gamma_box": lambda: cnn.EpsilonGammaBox(low.float(), high.float()),
                  "epsilon_plus_flat": cnn.EpsilonPlusFlat, "epsilon_alpha2_beta1": cnn.EpsilonAlpha2Beta1,
                  "gamma_schedule": lambda: cnn.GammaSchedule(low.float(), high.float())}
    return composites[name]()


def load_model(args) -> torch.nn.Module:
    """``--arch`` with ``--num-classes`` outputs and the ``--weights`` loaded, in eval mode."""
    classes = positive_int(args.num_classes, "--num-classes")
    return load_weights(build_model(args.arch, classes), args.weights, "weights file", args.arch,
                        classes_option="--num-classes")


def run(args) -> Path:
    from ..core import explain
    from ..viz import Report

    out = report_path(args.out)
    size = positive_int(args.size, "--size")
    target = parse_target(args.target)
    model = load_model(args)
    files = image_files(args.images)
    pictures = torch.stack([load_image(f, size) for f in files])
    result = explain(model, normalize(pictures), target, composite(args.composite))
    report = Report(f"seqlrp: {args.arch}", f"{len(files)} images, {args.composite}")
    report.section("Pixel relevance")
    for i, f in enumerate(files):
        report.add_image(result, i, pictures[i], method=args.composite, title=f.name)
    return report.save(out)
