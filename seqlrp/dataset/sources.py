"""Where the rows come from: each input format read as a stream, in input order, never loaded whole.

A :class:`Source` yields one cheap *handle* per row (a parsed line, an index, an image path) and
loads the rows of one shard when that shard is explained, so a rank skips the shards of the other
ranks without decoding them. Row ``id`` is the 0-based position in that stream: blank lines of
line-based files are not rows; every other line, object or record is one, even with an empty text.

Text rows are ``(tokens, label)`` with ``tokens`` a list of strings (split on whitespace) or of token
ids; image rows ``(image tensor, label, path)``.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

FORMATS = (".txt", ".tsv", ".csv", ".jsonl", ".parquet")
DEFAULT_TEXT_COLUMNS = ("text", "sentence")


class Source:
    """Rows in input order: ``len(source)``, ``chunks(size)`` of cheap handles, ``load(handles)``.

    Attributes
    ----------
    kind : {"text", "image"}
    class_names : list of str or None
        Names of the label classes, when the input has them (an image folder's class folders).
    """

    kind = "text"
    class_names: list[str] | None = None

    def __init__(self, limit: int | None = None):
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be a positive number of rows, got {limit}")
        self.limit = limit
        self._count: int | None = None

    def handles(self) -> Iterator[Any]:
        """One cheap handle per row, in input order (subclasses)."""
        raise NotImplementedError

    def load(self, handles: list) -> list[tuple]:
        """The rows of ``handles``: ``(tokens, label)`` for text, ``(image, label, path)`` for images."""
        return handles

    def describe(self) -> dict:
        """What identifies the input, for the output's manifest (a different input is a different run)."""
        return {"source": type(self).__name__}

    def _limited(self) -> Iterator[Any]:
        return itertools.islice(self.handles(), self.limit)

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self._limited())
        return self._count

    def chunks(self, size: int) -> Iterator[list]:
        """Consecutive lists of ``size`` handles (the last one shorter): shard ``k`` is the ``k``-th chunk."""
        iterator = self._limited()
        while chunk := list(itertools.islice(iterator, size)):
            yield chunk


# ------------------------------------------------------------------------------------------ text files
def _label(value) -> int | None:
    """An integer class label, or None (missing or not an integer)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _tokens(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value).split()


def _stat(path: Path) -> dict:
    info = path.stat()
    return {"path": str(path.resolve()), "bytes": info.st_size, "mtime_ns": info.st_mtime_ns}


class TextFile(Source):
    """A text file streamed row by row: ``.txt`` (one sentence per line), ``.tsv``/``.csv`` (a header row,
    the text in ``text_column``), ``.jsonl`` (one object per line, the text in field ``text_column``),
    ``.parquet`` (a string or list-of-strings column).

    Parameters
    ----------
    path : str or PathLike
        The file; its suffix picks the format.
    text_column : str, optional
        Column or field of the text (default: ``text``, else ``sentence``).
    label_column : str, optional
        Column of integer labels; ``None``: ``label`` when present.
    limit : int, optional
        Read only the first ``limit`` rows.
    """

    def __init__(self, path: str | os.PathLike, text_column: str | None = None, label_column: str | None = None,
                 limit: int | None = None):
        super().__init__(limit)
        self.path = Path(path)
        self.format = self.path.suffix.lower()
        if self.format not in FORMATS:
            raise ValueError(f"input file {self.path} has an unknown format {self.path.suffix or '(no suffix)'!r}; "
                             f"expected one of {', '.join(FORMATS)}")
        self.text_column, self.label_column = text_column, label_column
        if self.format != ".txt":
            columns = self._columns()
            self.text_column = self._pick_text_column(columns)
            if label_column is not None and label_column not in columns:
                raise ValueError(f"--label-column {label_column!r} is not a {self._what()} of {self.path} "
                                 f"({self._what()}s: {', '.join(columns)}); pass --label-column NAME")
            self.label_column = label_column if label_column is not None else ("label" if "label" in columns else None)
        self._check_binary()

    def _what(self) -> str:
        return "field" if self.format == ".jsonl" else "column"

    def _pick_text_column(self, columns: list[str]) -> str:
        option = "--text-field" if self.format == ".jsonl" else "--text-column"
        if self.text_column is not None:
            if self.text_column not in columns:
                raise ValueError(f"{option} {self.text_column!r} is not a {self._what()} of {self.path} "
                                 f"({self._what()}s: {', '.join(columns) or 'none'}); pass {option} NAME")
            return self.text_column
        for name in DEFAULT_TEXT_COLUMNS:
            if name in columns:
                return name
        raise ValueError(f"{self.path} has no 'text' or 'sentence' {self._what()} ({self._what()}s: "
                         f"{', '.join(columns) or 'none'}); pass {option} NAME")

    def _check_binary(self) -> None:
        if self.format == ".parquet":
            return
        with open(self.path, "rb") as file:
            if b"\x00" in file.read(65536):
                raise ValueError(f"input file {self.path} looks binary (it contains NUL bytes); expected UTF-8 "
                                 f"text in the {self.format} format")

    def _lines(self) -> Iterator[tuple[int, str]]:
        """(line number, line) of the UTF-8 file, without line ends."""
        with open(self.path, "rb") as file:
            for number, raw in enumerate(file, 1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as error:
                    raise ValueError(f"input file {self.path} is not UTF-8 text (byte 0x{raw[error.start]:02x} on "
                                     f"line {number}); re-encode it as UTF-8 (e.g. iconv -t UTF-8)") from None
                yield number, line.rstrip("\r\n")

    def _columns(self) -> list[str]:
        if self.format == ".parquet":
            import pyarrow.parquet as pq

            try:
                return list(pq.ParquetFile(self.path).schema_arrow.names)
            except Exception as error:  # noqa: BLE001 - any unreadable file is a user error
                raise ValueError(f"input file {self.path} is not a readable Parquet file ({error})") from None
        for number, line in self._lines():
            if not line.strip():
                continue
            if self.format == ".jsonl":
                return list(self._object(number, line))
            return next(csv.reader([line], **self._dialect()))
        raise ValueError(f"no rows in {self.path} (the file is empty)")

    def _dialect(self) -> dict:
        return {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if self.format == ".tsv" else {}

    def _object(self, number: int, line: str) -> dict:
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"line {number} of {self.path} is not JSON ({error.msg}); .jsonl holds one JSON "
                             "object per line") from None
        if not isinstance(value, dict):
            raise ValueError(f"line {number} of {self.path} is a JSON {type(value).__name__}, not an object; "
                             "each line must be an object such as {\"text\": \"...\"}")
        return value

    def handles(self) -> Iterator[tuple[list[str], int | None]]:
        if self.format == ".parquet":
            yield from self._parquet_rows()
        elif self.format == ".jsonl":
            for number, line in self._lines():
                if line.strip():
                    row = self._object(number, line)
                    if self.text_column not in row:
                        raise ValueError(f"line {number} of {self.path} has no field {self.text_column!r} (fields: "
                                         f"{', '.join(row) or 'none'}); every line needs it (--text-field NAME)")
                    yield _tokens(row[self.text_column]), _label(row.get(self.label_column))
        elif self.format == ".txt":
            for _, line in self._lines():
                if line.strip():
                    yield line.split(), None
        else:
            yield from self._table_rows()

    def _table_rows(self) -> Iterator[tuple[list[str], int | None]]:
        lines = ((n, line) for n, line in self._lines() if line.strip())
        numbers = []

        def numbered():
            for number, line in lines:
                numbers.append(number)
                yield line

        reader = csv.reader(numbered(), **self._dialect())
        header = next(reader)
        text = header.index(self.text_column)
        label = header.index(self.label_column) if self.label_column is not None else None
        for row in reader:
            if len(row) != len(header):
                raise ValueError(f"line {numbers[-1]} of {self.path} has {len(row)} field(s) but the header has "
                                 f"{len(header)}; check the delimiter ({'TAB' if self.format == '.tsv' else ','})")
            numbers.clear()
            yield row[text].split(), (_label(row[label]) if label is not None else None)

    def _parquet_rows(self) -> Iterator[tuple[list[str], int | None]]:
        import pyarrow.parquet as pq

        columns = [self.text_column] + ([self.label_column] if self.label_column else [])
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=8192, columns=columns):
            texts = batch.column(0).to_pylist()
            labels = batch.column(1).to_pylist() if self.label_column else [None] * len(texts)
            for value, label in zip(texts, labels, strict=True):
                yield _tokens(value), _label(label)

    def describe(self) -> dict:
        return {"source": "text file", **_stat(self.path), "text_column": self.text_column,
                "label_column": self.label_column}


# -------------------------------------------------------------------------------------------- datasets
class DatasetSource(Source):
    """A ``torch.utils.data.Dataset`` or a sequence: items are token ids / token strings / image tensors,
    or ``(item, label)`` tuples (as ``ImageFolder`` gives). Paths come from ``dataset.samples`` when the
    dataset has them (``ImageFolder``)."""

    def __init__(self, data, limit: int | None = None):
        super().__init__(limit)
        try:
            size = len(data)
        except TypeError:
            raise TypeError(f"data must be a sequence or a map-style torch Dataset (with __len__ and __getitem__), "
                            f"got {type(data).__name__}; wrap an iterable in a list or a seqlrp.dataset.Source") \
                from None
        if size == 0:
            raise ValueError("data is empty: nothing to explain")
        self.data, self._count = data, min(size, limit) if limit else size
        first, _ = _split(data[0])
        self.kind = "image" if isinstance(first, torch.Tensor) and first.is_floating_point() else "text"
        samples = getattr(data, "samples", None)
        self.paths = [str(p) for p, *_ in samples] if isinstance(samples, list) and len(samples) == size else None
        self.class_names = list(getattr(data, "classes", None) or []) or None

    def handles(self) -> Iterator[int]:
        return iter(range(self._count))

    def load(self, handles: list[int]) -> list[tuple]:
        rows = []
        for index in handles:
            item, label = _split(self.data[index])
            if self.kind == "image":
                path = self.paths[index] if self.paths is not None else None
                rows.append((item, label, path))
            else:
                rows.append((_ids_or_tokens(item, index), label))
        return rows

    def describe(self) -> dict:
        return {"source": type(self.data).__name__, "rows": len(self.data)}


def _split(item) -> tuple[Any, int | None]:
    if isinstance(item, tuple):
        if len(item) != 2:
            raise ValueError(f"dataset items must be x or (x, label), got a tuple of {len(item)}")
        x, label = item
        return x, _label(int(label) if isinstance(label, torch.Tensor) and label.numel() == 1 else label)
    return item, None


def _ids_or_tokens(item, index: int) -> list:
    if isinstance(item, str):
        return item.split()
    if isinstance(item, torch.Tensor):
        if item.is_floating_point() or item.dim() != 1:
            raise ValueError(f"text item {index} must be a 1-D tensor of token ids, got {item.dtype} of shape "
                             f"{tuple(item.shape)}")
        return item.tolist()
    if isinstance(item, Sequence):
        return list(item)
    raise TypeError(f"text item {index} must be token ids or token strings, got {type(item).__name__}")


class ImageFolderSource(Source):
    """Images in the ``ImageFolder`` layout (``DIR/class/image.jpg``), loaded per shard by ``loader(path)``."""

    kind = "image"

    def __init__(self, root: str | os.PathLike, loader: Callable[[Path], torch.Tensor], extensions: Sequence[str],
                 limit: int | None = None):
        from torchvision.datasets.folder import make_dataset

        super().__init__(limit)
        self.root, self.loader = Path(root), loader
        if not self.root.is_dir():
            raise ValueError(f"--images {self.root} is not a folder; expected the ImageFolder layout DIR/class/image")
        self.class_names = sorted(entry.name for entry in os.scandir(self.root) if entry.is_dir())
        if not self.class_names:
            raise ValueError(f"--images {self.root} has no class folders; expected the ImageFolder layout "
                             "DIR/class/image.jpg (one folder per class)")
        index = {name: i for i, name in enumerate(self.class_names)}
        self.samples = make_dataset(str(self.root), index, extensions=tuple(extensions), allow_empty=True)
        if not self.samples:
            raise ValueError(f"no images ({', '.join(extensions)}) in the class folders of {self.root}")
        self._count = min(len(self.samples), limit) if limit else len(self.samples)

    def handles(self) -> Iterator[tuple[str, int]]:
        return iter(self.samples)

    def load(self, handles: list[tuple[str, int]]) -> list[tuple]:
        return [(self.loader(Path(path)), label, os.path.relpath(path, self.root)) for path, label in handles]

    def describe(self) -> dict:
        return {"source": "image folder", "path": str(self.root.resolve()), "images": len(self.samples),
                "classes": self.class_names}


def as_source(data, limit: int | None = None) -> Source:
    """``data`` as a :class:`Source` (a Source is returned as it is; its own limit applies)."""
    return data if isinstance(data, Source) else DatasetSource(data, limit)
