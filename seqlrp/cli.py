"""The ``seqlrp`` command: ``demo``, ``explain-text``, ``explain-image``. Errors exit non-zero with a message."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

EXIT_USAGE, EXIT_INPUT = 2, 3


class CliError(Exception):
    """A user-facing error: printed as one line, exit code EXIT_INPUT."""


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    path = run_demo(Path(args.out))
    print(f"seqlrp demo: wrote {path.resolve()}")
    return 0


def _existing(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CliError(f"{what} not found: {p}")
    return p


def _load_text_model(args) -> torch.nn.Module:
    path = _existing(args.model, "model file")
    if args.model_class is None:
        try:
            torch.jit.load(str(path), map_location="cpu")
        except Exception as error:  # noqa: BLE001 - report any loading failure as a user error
            raise CliError(f"{path}: pass --model-class module:Class (and --model-arg key=value) to load a "
                           f"state_dict ({error.__class__.__name__} when read as TorchScript)") from error
        raise CliError(f"{path} is a TorchScript model: its compiled graph hides the layers LRP attaches rules to, "
                       "so it cannot be explained; save model.state_dict() and pass --model-class module:Class")
    module_name, _, class_name = args.model_class.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise CliError(f"cannot import {args.model_class!r}: {error}") from error
    kwargs = {}
    for item in args.model_arg or []:
        key, _, value = item.partition("=")
        kwargs[key] = int(value) if value.lstrip("-").isdigit() else value
    model = cls(**kwargs)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as error:  # noqa: BLE001
        raise CliError(f"{path} does not fit {args.model_class}: {error}") from error
    return model.eval()


def _read_sentences(path: Path) -> tuple[list[list[str]], list[int | None]]:
    sentences, labels = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip() or (number == 0 and line.lower().startswith("sentence\t")):
            continue
        text, _, label = line.partition("\t") if path.suffix == ".tsv" else (line, "", "")
        sentences.append(text.split())
        labels.append(int(label) if label.strip().lstrip("-").isdigit() else None)
    if not sentences:
        raise CliError(f"no sentences in {path}")
    return sentences, labels


def _explain_text(args: argparse.Namespace) -> int:
    from .lstm import explain_text
    from .viz import Report

    model = _load_text_model(args)
    vocab = _existing(args.vocab, "vocabulary file").read_text(encoding="utf-8").split("\n")
    vocab = [w for w in vocab if w != ""]
    index = {w: i for i, w in enumerate(vocab)}
    unk = index.get(args.unk)
    sentences, labels = _read_sentences(_existing(args.input, "input file"))
    lengths = torch.tensor([max(1, len(s)) for s in sentences])
    ids = torch.full((len(sentences), int(lengths.max())), index.get(args.pad, 0), dtype=torch.long)
    for row, sentence in enumerate(sentences):
        for col, word in enumerate(sentence):
            if word not in index and unk is None:
                raise CliError(f"word {word!r} (line {row + 1}) is not in the vocabulary and there is no {args.unk!r}")
            ids[row, col] = index.get(word, unk)
    target = None if args.target is None else int(args.target)
    result = explain_text(model, ids, target, lengths=lengths if args.lengths else None, epsilon=args.epsilon,
                          bias_factor=args.bias_factor, tokens=sentences)
    report = Report(f"seqlrp: {Path(args.model).name}", f"{len(sentences)} sentences from {args.input}")
    report.section("Token relevance")
    for i in range(len(sentences)):
        report.add_text(result, i, sentences[i], true_label=labels[i], method=f"LRP ε={args.epsilon}")
    path = report.save(args.out)
    print(f"seqlrp explain-text: wrote {path.resolve()}")
    return 0


def _explain_image(args: argparse.Namespace) -> int:
    import numpy as np
    import torchvision
    from PIL import Image, UnidentifiedImageError

    from . import cnn
    from .core import explain
    from .viz import Report

    if not hasattr(torchvision.models, args.arch):
        raise CliError(f"unknown architecture {args.arch!r} (torchvision.models has e.g. resnet50, densenet121, vgg16)")
    model = getattr(torchvision.models, args.arch)(weights=None)
    weights = _existing(args.weights, "weights file")
    try:
        model.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
    except Exception as error:  # noqa: BLE001
        raise CliError(f"{weights} does not match {args.arch}: {str(error).splitlines()[0]}") from error
    model.eval()
    files: list[Path] = []
    for item in args.images:
        p = _existing(item, "image")
        files += sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg")) if p.is_dir() else [p]
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    tensors = []
    for f in files:
        try:
            with Image.open(f) as opened:
                picture = torch.from_numpy(np.asarray(opened.convert("RGB")).copy()).permute(2, 0, 1)
        except (UnidentifiedImageError, OSError) as error:
            raise CliError(f"cannot decode image {f}: {error}") from error
        picture = torchvision.transforms.functional.resize(picture, [args.size, args.size], antialias=True)
        tensors.append((picture.float() / 255 - mean) / std)
    batch = torch.stack(tensors)
    low, high = cnn.bounds_from_normalization(mean.flatten().tolist(), std.flatten().tolist())
    composites = {"epsilon_gamma_box": lambda: cnn.EpsilonGammaBox(low.float(), high.float()),
                  "epsilon_plus_flat": cnn.EpsilonPlusFlat, "epsilon_alpha2_beta1": cnn.EpsilonAlpha2Beta1,
                  "gamma_schedule": lambda: cnn.GammaSchedule(low.float(), high.float())}
    result = explain(model, batch, None if args.target is None else int(args.target), composites[args.composite]())
    report = Report(f"seqlrp: {args.arch}", f"{len(files)} images, {args.composite}")
    report.section("Pixel relevance")
    for i, f in enumerate(files):
        report.add_image(result, i, batch[i] * std + mean, method=args.composite, title=f.name)
    path = report.save(args.out)
    print(f"seqlrp explain-image: wrote {path.resolve()}")
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="seqlrp", description="Layer-wise Relevance Propagation for PyTorch")
    sub = main.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train small models on embedded data, explain them, write report.html")
    demo.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    demo.set_defaults(func=_demo)
    text = sub.add_parser("explain-text", help="token relevance of a saved text classifier")
    text.add_argument("--model", required=True, help="a state_dict file (with --model-class)")
    text.add_argument("--model-class", help="importable module:Class for a state_dict")
    text.add_argument("--model-arg", action="append", help="key=value passed to the class (repeatable)")
    text.add_argument("--vocab", required=True, help="one token per line; the line number is the id")
    text.add_argument("--input", required=True, help=".tsv (sentence<TAB>label) or .txt (one sentence per line)")
    text.add_argument("--target", help="class to explain (default: predicted)")
    text.add_argument("--epsilon", type=float, default=1e-3)
    text.add_argument("--bias-factor", type=float, default=0.0)
    text.add_argument("--lengths", action="store_true", help="call model(ids, lengths)")
    text.add_argument("--pad", default="<pad>")
    text.add_argument("--unk", default="<unk>")
    text.add_argument("--out", default="report.html")
    text.set_defaults(func=_explain_text)
    image = sub.add_parser("explain-image", help="pixel relevance of a torchvision classifier")
    image.add_argument("--arch", required=True, help="torchvision architecture, e.g. resnet50")
    image.add_argument("--weights", required=True, help="state_dict file (.pth)")
    image.add_argument("--images", required=True, nargs="+", help="image files or directories")
    image.add_argument("--composite", default="epsilon_gamma_box",
                       choices=["epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1", "gamma_schedule"])
    image.add_argument("--target", help="class to explain (default: predicted)")
    image.add_argument("--size", type=int, default=224)
    image.add_argument("--out", default="report.html")
    image.set_defaults(func=_explain_image)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as error:
        print(f"seqlrp {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
