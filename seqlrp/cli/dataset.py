"""``seqlrp explain-dataset`` (a whole dataset to a Parquet dataset, on one or many processes) and
``seqlrp report-dataset`` (its dataset-level HTML report)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from . import hf, image, text
from .common import (
    CliError,
    Formatter,
    input_file,
    parse_target,
    positive_int,
    read_labels,
    report_path,
    to_flags,
)

if TYPE_CHECKING:
    import torch

    from ..dataset.sources import Source

EPILOG = """examples:
  seqlrp explain-dataset --input train.tsv --model model.pt --model-class seqlrp.lstm:BiLSTMClassifier \\
      --model-arg vocab_size=14756 --model-arg embedding_dim=60 --model-arg hidden_size=60 \\
      --model-arg num_classes=2 --vocab vocab.txt --lengths --out out/train
  torchrun --nproc_per_node 4 -m seqlrp explain-dataset --input reviews.jsonl --text-field body ... --out out/r
  seqlrp explain-dataset --workers 2 --images photos/ --arch resnet50 --weights resnet50.pth --out out/photos
  seqlrp explain-dataset --input reviews.tsv --hf-model my-finetuned-bert/ --composite cplrp --out out/reviews
  seqlrp report-dataset out/train --out train-report.html

A killed or interrupted run is resumed by running the same command again; --out must be shared by all
ranks (a shared filesystem when torchrun spans several machines)."""


def add_parsers(sub) -> None:
    explain = sub.add_parser("explain-dataset", help="explain a whole dataset to Parquet (torchrun, resumable)",
                             description="Explain every row of a text file or every image of an ImageFolder and "
                             "write a Parquet dataset (part-*.parquet, then _SUCCESS) to --out. Runs on one process, "
                             "on --workers N local processes, or on every rank of torchrun.",
                             epilog=EPILOG, formatter_class=Formatter)
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="text: .txt (a sentence per line), .tsv/.csv (header row), .jsonl, .parquet")
    source.add_argument("--images", help="images in the ImageFolder layout: DIR/class/image.jpg")
    explain.add_argument("--out", required=True, help="folder of the Parquet dataset (created; resumed when it "
                                                      "holds a run of the same command)")
    group = explain.add_argument_group("text (--input)")
    which = group.add_mutually_exclusive_group()
    which.add_argument("--model", help="a state_dict file (torch.save(model.state_dict(), FILE)) of an LSTM/GRU "
                                       "classifier (with --model-class and --vocab)")
    which.add_argument("--hf-model", metavar="DIR", help="a Hugging Face model folder with its tokenizer "
                       "(save_pretrained); texts are read as written and explained word by word")
    group.add_argument("--model-class", help="the model's class: importable module:Class or path/file.py:Class")
    group.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                       help="keyword argument of the class, a Python literal or a string (repeatable)")
    group.add_argument("--vocab", help="UTF-8 file, one token per line; the line number is the id")
    group.add_argument("--unk", default="<unk>", help="the vocabulary's unknown-word token")
    group.add_argument("--text-column", "--text-field", dest="text_column",
                       help="column (.tsv/.csv/.parquet) or field (.jsonl) of the text (default: text, else sentence)")
    group.add_argument("--label-column", "--label-field", dest="label_column",
                       help="column or field of integer labels (default: label, when present)")
    group.add_argument("--lengths", action="store_true", help="call model(token_ids, lengths) on mixed-length sorted "
                                                              "batches (the model packs); default: one length a batch")
    group.add_argument("--epsilon", type=float, help="ε of the rules (default: 1e-3 for --model's LSTM-LRP, 1e-6 for "
                                                     "--hf-model's presets)")
    group.add_argument("--bias-factor", type=float, default=0.0, help="Arras's bias share, 0 to 1 (1 conserves)")
    group = explain.add_argument_group("images (--images)")
    group.add_argument("--arch", help="torchvision architecture, e.g. resnet50, densenet121, vgg16")
    group.add_argument("--weights", help="state_dict file of that architecture (.pth)")
    group.add_argument("--num-classes", type=int, default=1000, help="output classes of the weights")
    group.add_argument("--composite", choices=image.COMPOSITES + hf.COMPOSITES,
                       help="LRP rule preset (default: epsilon_gamma_box for --images; for --hf-model attnlrp, "
                       "or recurrentlrp for the recurrent families)")
    group.add_argument("--size", type=int, default=224, help="crop size (shorter side resized to size·256/224)")
    group = explain.add_argument_group("run")
    group.add_argument("--target", help="class index to explain (default: the predicted class)")
    group.add_argument("--batch-size", type=int, default=256, help="examples per explained batch")
    group.add_argument("--shard-size", type=int, default=4096, help="rows per shard = per part file")
    group.add_argument("--limit", type=int, help="explain only the first N rows")
    group.add_argument("--workers", type=int, default=1, help="local processes (torch.distributed, gloo on CPU); "
                                                              "the CPU threads are divided among them")
    group.add_argument("--overwrite", action="store_true", help="replace an --out made with another command line")
    explain.set_defaults(func=run)

    report = sub.add_parser("report-dataset", help="dataset-level HTML report of an explain-dataset output",
                            description="Text: per class the tokens with the highest and lowest mean relevance, "
                            "with sentences in context; conservation at scale. Images: mean relevance map per "
                            "class, the most extreme examples.",
                            epilog="example:\n  seqlrp report-dataset out/train --min-count 10 --out report.html",
                            formatter_class=Formatter)
    report.add_argument("dataset", help="the --out folder of seqlrp explain-dataset")
    report.add_argument("--out", default="report.html", help="a folder (report.html inside) or a .html file path")
    report.add_argument("--min-count", type=int, default=5, help="tokens seen fewer times in a class are left out")
    report.add_argument("--top", type=int, default=15, help="tokens per table")
    report.add_argument("--examples", type=int, default=3, help="sentences (images) shown per token (side)")
    report.add_argument("--context", type=int, default=8, help="tokens shown on each side of the token")
    report.add_argument("--labels", metavar="FILE", help="class names, one per line in class-index order (default: "
                        "the image folder's classes, else indices)")
    report.add_argument("--class-names", help=argparse.SUPPRESS)  # (deprecated: --labels FILE)
    report.set_defaults(func=run_report)


def default_threads() -> int:
    """Threads of a single process: torch's default, lowered to the cores that are free (the machine's load
    average) so that a loaded machine is not oversubscribed; ``OMP_NUM_THREADS`` set by the user wins."""
    import torch

    threads = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS") or threads <= 1:
        return threads
    try:
        busy = os.getloadavg()[0]
    except (OSError, AttributeError):  # (no load average on this system)
        return threads
    return max(1, min(threads, round((os.cpu_count() or 1) - busy)))


def flags(args) -> dict[str, str]:
    """The library's keywords as this command line's options (for its error messages)."""
    field = getattr(args, "input", None) is not None and str(args.input).lower().endswith(".jsonl")
    return {"text_column": "--text-field" if field else "--text-column",
            "label_column": "--label-field" if field else "--label-column", "overwrite": "--overwrite",
            "out": "--out", "unk": "--unk", "limit": "--limit", "batch_size": "--batch-size",
            "shard_size": "--shard-size", "min_count": "--min-count", "top": "--top", "examples": "--examples",
            "context": "--context", "class_names": "--labels", "lengths": "--lengths"}


def _translated(function, args):
    """Run ``function(args)``; a library error is re-raised in the command line's words."""
    try:
        return function(args)
    except (ValueError, TypeError) as error:
        raise CliError(to_flags(str(error), flags(args))) from None


def _need(args, options: list[str], what: str) -> None:
    missing = [o for o in options if getattr(args, o.lstrip("-").replace("-", "_")) is None]
    if missing:
        raise CliError(f"{what} needs {', '.join(missing)}")


def _fingerprint(args, composite: str | None) -> dict:
    """The options of the command line that make the result (not how it is run: --batch-size, --workers); the
    files' contents, the model's code and configuration, the tokenizer and every rule parameter are in the run's
    identity already."""
    if args.input is not None and args.hf_model is not None:
        return {"command": "hf", "composite": composite, "limit": args.limit}
    if args.input is not None:
        return {"command": "text", "model_class": args.model_class, "model_args": args.model_arg or [],
                "limit": args.limit}
    return {"command": "images", "arch": args.arch, "num_classes": args.num_classes, "size": args.size,
            "composite": composite, "limit": args.limit}


def _composite_name(args) -> str | None:
    """``--composite`` checked against the kind of run, with its default (None: the LSTM route, set by --epsilon and
    --bias-factor)."""
    name = args.composite
    if args.input is not None and args.hf_model is None:
        if name is not None:
            raise CliError(f"--composite {name} is a preset of --images or --hf-model; --model's LSTM-LRP rules are "
                           "set with --epsilon and --bias-factor")
        return None
    if args.input is not None:
        if name is not None and name not in hf.COMPOSITES:
            raise CliError(f"--composite {name} is an image preset; --hf-model takes one of {', '.join(hf.COMPOSITES)}")
        return name  # (None: the model's family default, see hf.transformer_composite)
    if name is not None and name not in image.COMPOSITES:
        raise CliError(f"--composite {name} is a transformer preset (--hf-model); --images takes one of "
                       f"{', '.join(image.COMPOSITES)}")
    return name or "epsilon_gamma_box"


def _job(args) -> tuple[torch.nn.Module, Source, dict]:
    """The model, the streamed source and explain_dataset's keyword arguments of the command line."""
    from ..dataset.sources import ImageFolderSource, TextFile

    limit = positive_int(args.limit, "--limit") if args.limit is not None else None
    if args.input is not None and args.hf_model is not None:
        hf.check_hf_flags(args)
    elif args.input is not None:
        if args.model is None:
            raise CliError("--input (text) needs a model: --model FILE with --model-class and --vocab (an LSTM/GRU "
                           "state_dict), or --hf-model DIR (a Hugging Face model folder with its tokenizer)")
        _need(args, ["--model", "--model-class", "--vocab"], "--input (text)")
    else:
        if args.hf_model is not None:
            raise CliError("--hf-model explains text (--input FILE); --images takes --arch and --weights")
        _need(args, ["--arch", "--weights"], "--images")
    composite = _composite_name(args)
    options = {"target": parse_target(args.target), "batch_size": positive_int(args.batch_size, "--batch-size"),
               "shard_size": positive_int(args.shard_size, "--shard-size"),
               "fingerprint": _fingerprint(args, composite)}
    if args.input is not None and args.hf_model is not None:
        model, tokenizer, _ = hf.load_hf(args.hf_model)
        source = TextFile(input_file(args.input, "input file"), args.text_column, args.label_column, limit,
                          tokenizer=tokenizer)
        options["composite"] = hf.transformer_composite(composite, args.epsilon, model)
        options["fingerprint"]["composite"] = hf.composite_name(composite, model)  # (the family default resolved)
    elif args.input is not None:
        source = TextFile(input_file(args.input, "input file"), args.text_column, args.label_column, limit,
                          vocabulary=text.read_vocabulary(args.vocab), unk=args.unk, lengths=args.lengths)
        model = text.load_text_model(args)
        epsilon = text.LSTM_EPSILON if args.epsilon is None else args.epsilon
        options["composite"] = text.lstm_rules(epsilon, args.bias_factor)
    else:
        size = positive_int(args.size, "--size")
        source = ImageFolderSource(args.images, lambda path: image.normalize(image.load_image(path, size)),
                                   image.EXTENSIONS, limit)
        model = image.load_model(args)
        options["composite"] = image.composite(composite)
    return model, source, options


def _explain(args) -> Path | None:
    """Explain on this process: alone, or as one rank of torchrun / ``--workers``; rank 0 returns --out."""
    import torch

    from ..dataset import explain_dataset
    from ..dataset.sharding import init_from_env

    ranks = init_from_env()
    threads = torch.get_num_threads()
    if not ranks.distributed and getattr(args, "workers", 1) == 1:
        torch.set_num_threads(default_threads())
    try:
        model, source, options = _job(args)
        summary = explain_dataset(model.to(ranks.device()), source, out=args.out, overwrite=args.overwrite,
                                  **options)
    finally:
        torch.set_num_threads(threads)  # (main() may run inside a caller's process: leave its setting as it was)
        if ranks.distributed:
            torch.distributed.destroy_process_group()
    if ranks.rank != 0:
        return None
    print(f"seqlrp explain-dataset: {summary}" + (" (threads: OMP_NUM_THREADS)" if os.environ.get("OMP_NUM_THREADS")
                                                  else " (threads: the free cores, from the load average)"),
          file=sys.stderr)
    if not summary.complete:
        raise CliError(f"{args.out} is incomplete; run the same command again to finish it")
    return Path(args.out)


def _worker(settings: dict, threads: int) -> None:
    """One process of ``--workers`` (started by torch.distributed's elastic launcher, torchrun's API)."""
    import torch

    from .common import one_line

    torch.set_num_threads(threads)
    try:
        _explain(argparse.Namespace(**settings))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - one line per failed worker, the launcher stops the others
        if os.environ.get("SEQLRP_TRACEBACK"):
            raise
        rank = os.environ.get("RANK", "?")
        print(f"seqlrp explain-dataset (worker {rank}): error: {one_line(str(error))}", file=sys.stderr)
        sys.exit(3)


def _launch(args) -> Path:
    """``--workers N``: check and prepare --out here, then start N processes on this machine."""
    import torch
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from ..dataset import explain_dataset

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise CliError("--workers starts its own processes; under torchrun use --nproc_per_node instead")
    workers = positive_int(args.workers, "--workers")
    model, source, options = _job(args)
    explain_dataset(model, source, out=args.out, overwrite=args.overwrite, setup_only=True, **options)
    settings = {k: v for k, v in vars(args).items() if k != "func"} | {"workers": 1, "overwrite": False}
    threads = max(1, torch.get_num_threads() // workers)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=workers, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.1,
                          logs_specs=DefaultLogsSpecs(), start_method="spawn")
    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # (the launcher's own logs of a failure: one line below says it)
        logger.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, _worker)(settings, threads)
    except SignalException as error:  # (the launcher turns Ctrl-C and kill into this; the workers stop too)
        raise KeyboardInterrupt from error
    except ChildFailedError as error:
        codes = sorted({failure.exitcode for failure in error.failures.values()})
        if 130 in codes or -2 in codes:
            raise KeyboardInterrupt from None
        cause = f"killed by signal {-codes[0]}" if codes[0] < 0 else f"exit code {codes[0]}, its error is above"
        raise CliError(f"{len(error.failures)} of {workers} worker(s) failed ({cause}); run the same command again "
                       "to resume") from None
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    return Path(args.out)


def run(args) -> Path | None:
    if args.workers != 1:
        return _translated(_launch, args)
    return _translated(_explain, args)


def run_report(args) -> Path:
    return _translated(_report, args)


def _report(args) -> Path:
    import warnings

    from ..dataset import report_dataset

    out = report_path(args.out)
    dataset = Path(args.dataset)
    if not dataset.exists():
        raise CliError(f"dataset folder not found: {dataset}")
    if dataset.is_dir() and out.resolve().parent == dataset.resolve():
        raise CliError(f"--out {out} is inside the dataset folder, where Parquet readers would take it for a part "
                       "file; write the report elsewhere")
    names = read_labels(args.labels)
    if args.class_names:
        warnings.warn("--class-names is deprecated: pass --labels FILE (one class name per line), as in every "
                      "other command", DeprecationWarning, stacklevel=1)
        names = names or [n.strip() for n in args.class_names.split(",")]
    for option in ("min_count", "top", "examples"):
        positive_int(getattr(args, option), f"--{option.replace('_', '-')}")
    return report_dataset(dataset, out, min_count=args.min_count, top=args.top, examples=args.examples,
                          context=args.context, class_names=names)
