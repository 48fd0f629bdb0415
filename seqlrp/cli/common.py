"""What every ``seqlrp`` subcommand shares: input files, the report path, loading models and weights.

Every mistake a user can make here ends in :class:`CliError`: one line naming the cause and the fix,
exit status 3 (see :func:`seqlrp.cli.main`).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import re
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

EXIT_USAGE, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 3, 1, 130

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """``--help``: every option says its default (or that it is required), the examples in the epilog kept as
    written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default:" in text or "%(default)" in text or not action.option_strings \
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        if action.required:
            return text + " (required)"
        if action.default is None:
            return text + " (default: not set)"
        if action.default is False and action.nargs == 0:
            return text + " (default: off)"
        return text + " (default: %(default)s)"


class CliError(Exception):
    """A user-facing error: printed as one line, exit status :data:`EXIT_INPUT`."""


def to_flags(message: str, flags: Mapping[str, str]) -> str:
    """A library message in the command line's words: ``keyword=True`` -> ``--flag``, ``keyword=VALUE`` ->
    ``--flag VALUE``, a bare ``keyword=`` -> ``--flag`` (``flags``: keyword -> flag)."""
    for keyword, flag in flags.items():
        message = re.sub(rf"(?<![\w.-]){keyword}=True\b", flag, message)
        message = re.sub(rf"(?<![\w.-]){keyword}=(?=[^\s,;)])", flag + " ", message)
        message = re.sub(rf"(?<![\w.-]){keyword}=", flag, message)
    return message


def one_line(message: str, limit: int = 800) -> str:
    """``message`` without terminal colour codes, on one line, at most ``limit`` characters."""
    text = " ".join(_ANSI.sub("", str(message)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------- files
def input_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is an existing regular file (a FIFO or device would block or never end)."""
    p = Path(path)
    if not p.exists():
        raise CliError(f"{what} not found: {p}")
    if p.is_dir():
        raise CliError(f"{what} {p} is a folder; expected a file")
    if not p.is_file():
        raise CliError(f"{what} {p} is not a regular file (a FIFO, socket or device); pass a file")
    if not os.access(p, os.R_OK):
        raise CliError(f"{what} {p} is not readable (permissions)")
    return p


def read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of a regular file; binary or otherwise encoded files are refused with the fix."""
    p = input_file(path, what)
    data = p.read_bytes()
    if b"\x00" in data[:65536]:
        raise CliError(f"{what} {p} looks binary (it contains NUL bytes); expected UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CliError(f"{what} {p} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
                       "re-encode it as UTF-8 (e.g. iconv -t UTF-8)") from None


def report_path(out: str | os.PathLike) -> Path:
    """``--out`` of every subcommand: a folder (the report is ``FOLDER/report.html``) or a ``.html`` file path."""
    p = Path(out)
    if p.suffix.lower() in (".html", ".htm"):
        if p.is_dir():
            raise CliError(f"--out {p} is an existing folder; pass a folder without a .html suffix or a file path")
        return p
    if p.exists() and not p.is_dir():
        raise CliError(f"--out {p} exists and is not a folder; pass a folder (the report goes to FOLDER/report.html) "
                       "or a .html file path")
    return p / "report.html"


def positive_int(value: int, option: str) -> int:
    if value < 1:
        raise CliError(f"{option} must be a positive integer, got {value}")
    return value


def parse_target(value: str | None, option: str = "--target") -> int | None:
    """A class index (the range is checked against the model's output when it is known)."""
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise CliError(f"{option} must be a class index (an integer such as 0 or 3), got {value!r}") from None


# --------------------------------------------------------------------------------------------- models
def import_class(spec: str) -> type:
    """``module:Class`` or ``path/to/file.py:Class``; the current folder is importable, as for ``python``."""
    from torch import nn

    module_name, sep, class_name = spec.rpartition(":")
    if not sep or not module_name or not class_name.isidentifier():
        raise CliError(f"--model-class must be module:Class or file.py:Class, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            source = input_file(module_name, "--model-class file")
            module_spec = importlib.util.spec_from_file_location(source.stem, source)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:  # (python itself puts the current folder first; a console script not)
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except CliError:
        raise
    except Exception as error:  # noqa: BLE001 - importing user code can raise anything
        raise CliError(f"cannot import {module_name!r} for --model-class: {type(error).__name__}: {error}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CliError(f"--model-class {spec}: {module_name!r} has no torch.nn.Module class {class_name!r}")
    return cls


def model_kwargs(items: list[str] | None) -> dict:
    """``--model-arg key=value`` pairs; values are Python literals (``0.1``, ``True``, ``[2, 3]``) or strings."""
    kwargs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CliError(f"--model-arg {item!r}: expected key=value, e.g. hidden_size=64")
        try:
            kwargs[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            kwargs[key] = value
    return kwargs


def build(cls: type, kwargs: dict) -> nn.Module:
    try:
        return cls(**kwargs)
    except Exception as error:  # noqa: BLE001 - the user's constructor can raise anything
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise CliError(f"cannot build {cls.__name__}({shown}): {type(error).__name__}: {error} "
                       "(check --model-arg)") from None


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (a zip with compiled code), told apart from a ``torch.save`` file without loading it."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def load_weights(model: nn.Module, path: str | os.PathLike, what: str, name: str,
                 classes_option: str | None = None) -> nn.Module:
    """Load a ``state_dict`` file (``torch.load(weights_only=True)``) into ``model``; every mismatch named.

    ``classes_option``: the option that sets the number of classes, suggested when only the last layer differs.
    """
    import torch

    p = input_file(path, what)
    if is_torchscript(p):
        raise CliError(f"{p} is a TorchScript model: its compiled graph hides the layers LRP attaches rules to, so it "
                       "cannot be explained; save model.state_dict() and load that")
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is a user error
        first = one_line(str(error).splitlines()[0] if str(error) else type(error).__name__, 200)
        if zipfile.is_zipfile(p) and "Unsupported global" in str(error):  # (a torch.save of objects, not tensors)
            raise CliError(f"{p} holds pickled Python objects, not only tensors; save model.state_dict() with "
                           "torch.save and pass that file") from None
        raise CliError(f"{p} is not a PyTorch weights file (torch.load: {first})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = list(state)[:5] if isinstance(state, Mapping) else type(state).__name__
        raise CliError(f"{p} does not hold a state_dict (names -> tensors), found {keys}; save model.state_dict()")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own
                  if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = [f"{len(missing)} missing key(s)" + (f" (e.g. {missing[0]})" if missing else ""),
                 f"{len(unexpected)} unexpected key(s)" + (f" (e.g. {unexpected[0]})" if unexpected else ""),
                 f"{len(mismatched)} shape mismatch(es)"
                 + (f" (e.g. {mismatched[0][0]}: file {mismatched[0][1]}, model {mismatched[0][2]})"
                    if mismatched else "")]
        head = list(own)[-1].rpartition(".")[0]
        if classes_option and mismatched and not (missing or unexpected) \
                and all(k.rpartition(".")[0] == head for k, _, _ in mismatched):
            parts.append(f"only the last layer differs: the file has {mismatched[0][1][0]} classes (pass "
                         f"{classes_option} {mismatched[0][1][0]})")
        raise CliError(f"{p} does not fit {name}: " + ", ".join(parts))
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------------------------- labels
def read_labels(path: str | os.PathLike | None) -> list[str] | None:
    """``--labels FILE``: one class name per line, in class-index order (blank lines at the end ignored)."""
    if path is None:
        return None
    lines = read_text(path, "labels file").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise CliError(f"labels file {path} holds no class names; write one name per line, in class-index order")
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        raise CliError(f"labels file {path}: line {blank[0]} is blank; write one name per line, in class-index order")
    return [line.strip() for line in lines]


def check_label_count(labels: list[str] | None, classes: int, path, classes_option: str | None = None
                      ) -> list[str] | None:
    """The labels when there is one per class; else the CliError naming both counts and the fix (with
    ``classes_option``: the option that sets the class count, named first)."""
    if labels is not None and len(labels) != classes:
        if classes_option is not None:
            raise CliError(f"labels file {path} has {len(labels)} class names but {classes_option} is {classes}; "
                           f"pass {classes_option} {len(labels)} if the model has {len(labels)} classes, else write "
                           f"one name per class in {path}")
        raise CliError(f"labels file {path} has {len(labels)} lines but the model has {classes} classes; write "
                       "exactly one class name per line, in class-index order")
    return labels

