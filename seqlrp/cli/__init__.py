"""The ``seqlrp`` command: ``demo``, ``explain-text``, ``explain-image``, ``explain-dataset``, ``report-dataset``
(also ``python -m seqlrp``).

The error contract: a mistake (a missing or unreadable file, weights that do not fit, a bad option
value, a model the rules cannot explain) prints ONE line ``seqlrp <command>: error: <cause and fix>``
on stderr and exits with status 3; argparse usage errors exit with 2; Ctrl-C exits with 130 and leaves
no half-written file (every output is written atomically). An unexpected internal error prints one
line and exits with 1; ``SEQLRP_TRACEBACK=1`` shows its traceback. Warnings are printed as one line
each.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from . import dataset, image, text
from .common import EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, CliError, Formatter, one_line

__all__ = ["EXIT_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_USAGE", "CliError", "main", "parser"]


def _demo(args: argparse.Namespace) -> Path:
    from ..demo import run_demo
    from .common import report_path

    return run_demo(report_path(args.out))


def parser() -> argparse.ArgumentParser:
    from .. import __version__

    main_parser = argparse.ArgumentParser(prog="seqlrp", description="Layer-wise Relevance Propagation for PyTorch: "
                                          "which tokens made an LSTM decide, which pixels made a CNN decide.",
                                          epilog="Run 'seqlrp COMMAND --help' for a command's options and examples.",
                                          formatter_class=Formatter)
    main_parser.add_argument("--version", action="version", version=f"seqlrp {__version__}")
    sub = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="train small models on embedded data, explain them, write report.html",
                          description="Train a BiLSTM on a generated text task and a residual CNN on scikit-learn's "
                          "digits (about a minute on 2 CPU cores), explain both, write one HTML report.",
                          epilog="example:\n  seqlrp demo --out out/demo", formatter_class=Formatter)
    demo.add_argument("--out", default="out/demo", help="a folder (report.html inside) or a .html file path")
    demo.set_defaults(func=_demo)
    text.add_parser(sub)
    image.add_parser(sub)
    dataset.add_parsers(sub)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    args = parser().parse_args(argv)
    prefix = f"seqlrp {args.command}"

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"{prefix}: warning: {one_line(str(message))}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            path = args.func(args)
        except KeyboardInterrupt:
            print(f"{prefix}: interrupted (nothing half-written was left)", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as error:  # noqa: BLE001 - the contract: one line, never a traceback
            if os.environ.get("SEQLRP_TRACEBACK"):
                raise
            if isinstance(error, (CliError, ValueError, TypeError, RuntimeError, OSError, LookupError)):
                message = one_line(str(error)) or type(error).__name__
                if "lengths" in vars(args) and not args.lengths and "required positional argument" in message \
                        and "'lengths'" in message:
                    message = ("the model's forward needs lengths (forward() missing 'lengths'): pass --lengths to "
                               "call model(token_ids, lengths)")
                print(f"{prefix}: error: {message}", file=sys.stderr)
                return EXIT_INPUT
            print(f"{prefix}: internal error: {type(error).__name__}: {one_line(str(error))} (this looks like a bug "
                  "in seqlrp; rerun with SEQLRP_TRACEBACK=1 and report the traceback)", file=sys.stderr)
            return EXIT_INTERNAL
    if path is not None:  # (None: a rank > 0 of a distributed run; rank 0 reports)
        print(f"{prefix}: wrote {Path(path).resolve()}")
    return 0
