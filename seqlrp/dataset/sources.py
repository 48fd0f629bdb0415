"""Where the rows come from: each input format read as a stream, in input order, never loaded whole.

A :class:`Source` yields one cheap *handle* per row (a parsed line, an index, an image path) and
loads the rows of one shard when that shard is explained, so a rank skips the shards of the other
ranks without decoding them. Row ``id`` is the 0-based position in that stream: blank lines of
line-based files are not rows; every other line, object or record is one, even with an empty text.

Text rows are ``(tokens, label)`` with ``tokens`` a list of strings (split on whitespace) or of token
ids; image rows ``(image tensor, label, path)``. A text source with a Hugging Face ``tokenizer`` keeps each text as
written instead (a string, or a list of words already split), for the tokenizer to read.
"""

from __future__ import annotations

import abc
import hashlib
import itertools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .identity import RowHasher, describe
from .readers import READERS, reader_for

FORMATS = tuple(READERS)
DEFAULT_TEXT_COLUMNS = ("text", "sentence")


class Source(abc.ABC):
    """Rows in input order: ``len(source)``, ``chunks(size)`` of cheap handles, ``load(handles)``.

    Attributes
    ----------
    kind : {"text", "image"}
    class_names : list of str or None
        Names of the label classes, when the input has them (an image folder's class folders).
    vocabulary : mapping or sequence, optional
        Text: token -> id (or the list of tokens by id): looks token strings up and names token ids in the
        ``tokens`` column (without it, ids are written as strings).
    unk : str
        Text: the vocabulary's unknown-word token (an unknown word without it is an error).
    lengths : bool
        Text: call ``model(token_ids, lengths)`` on mixed-length sorted batches (the model must pack its
        sequences); False: one length per batch, no padding at all.
    tokenizer : optional
        Text, a Hugging Face model: its tokenizer. Rows stay texts as written (a string, not split on whitespace;
        a list of strings is taken as words already split) and are explained word by word (see
        :mod:`seqlrp.transformers.batching`); ``vocabulary``, ``unk`` and ``lengths`` do not apply.
    """

    kind = "text"
    class_names: list[str] | None = None
    where: str | None = None  # (the file or folder read, shown in reports; not part of the run's identity)

    def __init__(self, limit: int | None = None, *, vocabulary=None, unk: str = "<unk>", lengths: bool = False,
                 tokenizer=None):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive whole number of rows, got {limit!r}")
        if tokenizer is not None and (vocabulary is not None or lengths):
            given = ", ".join(k for k, v in (("vocabulary=", vocabulary is not None), ("lengths=True", lengths)) if v)
            raise ValueError(f"tokenizer= (a Hugging Face model's) reads the texts itself; {given} "
                             f"{'is' if ',' not in given else 'are'} for a model on token ids: give one or the other")
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(f"tokenizer= must be a Hugging Face tokenizer (callable on texts), got "
                            f"{type(tokenizer).__name__}")
        self.limit = limit
        self.vocabulary, self.unk, self.lengths = vocabulary, unk, bool(lengths)
        self.tokenizer = tokenizer
        self._count: int | None = None

    @abc.abstractmethod
    def handles(self) -> Iterator[Any]:
        """One cheap handle per row, in input order (subclasses)."""

    def load(self, handles: list) -> list[tuple]:
        """The rows of ``handles``: ``(tokens, label)`` for text, ``(image, label, path)`` for images."""
        return handles

    def describe(self) -> dict:
        """How the input is read, for the output's manifest (its content is identified by :meth:`scan`)."""
        return {"source": type(self).__name__}

    def scan(self, handles: list, rows: list[tuple] | None = None) -> tuple[str, list]:
        """The hash of the content of these rows and their labels (the run's identity, the label type).

        This default hashes the loaded rows (``rows``, or ``load(handles)``); a source with cheaper handles
        (a parsed line, a file path) overrides it and ignores ``rows``.
        """
        hasher = RowHasher()
        rows = self.load(handles) if rows is None else rows
        for row in rows:
            hasher.update(*(describe(part) if not isinstance(part, (torch.Tensor, str, bytes)) else part
                            for part in row))
        return hasher.hexdigest(), [row[1] for row in rows]

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
_INT64 = range(-(2**63), 2**63)
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _label(value) -> int | str | None:
    """A class label as written: an integer (within int64) stays one; any other value is kept as its text
    (``"positive"``, ``"1.0"``); missing or empty is None. A dataset whose labels are not all integers
    stores them all as strings (see :func:`label_type`)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return value if value in _INT64 else str(value)
    text = str(value).strip()
    if not text:
        return None
    if _INTEGER.fullmatch(text):
        number = int(text)
        return number if number in _INT64 else text
    return text


def label_type(labels) -> str:
    """``"int64"`` when every label is an integer (or missing), else ``"string"``."""
    return "string" if any(isinstance(label, str) for label in labels) else "int64"


def _tokens(value, where: str) -> list[str]:
    """The tokens of a text value: a string split on whitespace, or a list of strings; anything else is refused
    (a JSON object, a number or a bool is not text)."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    kind = type(value).__name__ if not isinstance(value, (list, tuple)) else \
        f"list holding a {type(next(v for v in value if not isinstance(v, str))).__name__}"
    raise ValueError(f"{where}: the text is a {kind} ({_shorten(value)}), not a string or a list of strings; "
                     "write the text as a string")


def _text(value, where: str) -> str | list[str]:
    """The text of a value as written, for a tokenizer: a string, or a list of strings (words already split)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    _tokens(value, where)  # (raises, naming what the value is)
    raise AssertionError("unreachable")


def _shorten(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:32]


class TextFile(Source):
    """A text file streamed row by row; its suffix picks the reader (:data:`seqlrp.dataset.readers.READERS`):
    ``.txt`` (one sentence per line), ``.tsv``/``.csv`` (a header row, the text in ``text_column``;
    RFC 4180 quotes), ``.jsonl`` (one object per line, the text in field ``text_column``), ``.parquet``
    (a string or list-of-strings column).

    Parameters
    ----------
    path : str or PathLike
        The file; its suffix picks the format.
    text_column : str, optional
        Column or field of the text (default: ``text``, else ``sentence``).
    label_column : str, optional
        Column of the labels; ``None``: ``label`` when present. Integer labels are stored as integers;
        when any label is not an integer (``positive``, ``1.0``) all are stored as strings.
    limit : int, optional
        Read only the first ``limit`` rows.
    vocabulary, unk, lengths, tokenizer
        How rows become the model's input (see :class:`Source`).
    """

    def __init__(self, path: str | os.PathLike, text_column: str | None = None, label_column: str | None = None,
                 limit: int | None = None, *, vocabulary=None, unk: str = "<unk>", lengths: bool = False,
                 tokenizer=None):
        super().__init__(limit, vocabulary=vocabulary, unk=unk, lengths=lengths, tokenizer=tokenizer)
        self.path = Path(path)
        self.where = str(self.path.resolve())
        self.reader = reader_for(self.path)
        what = self.reader.what
        self.text_column, self.label_column = text_column, label_column
        if self.reader.has_columns:
            columns = self.reader.columns()
            self.text_column = self._pick_text_column(columns)
            if label_column is not None and label_column not in columns:
                raise ValueError(f"label_column={label_column!r} is not a {what} of {self.path} ({what}s: "
                                 f"{', '.join(columns)}); pass label_column=NAME")
            self.label_column = label_column if label_column is not None else ("label" if "label" in columns else None)
        else:
            self.text_column, self.label_column = "text", None

    def _pick_text_column(self, columns: list[str]) -> str:
        what = self.reader.what
        if self.text_column is not None:
            if self.text_column not in columns:
                raise ValueError(f"text_column={self.text_column!r} is not a {what} of {self.path} ({what}s: "
                                 f"{', '.join(columns) or 'none'}); pass text_column=NAME")
            return self.text_column
        for name in DEFAULT_TEXT_COLUMNS:
            if name in columns:
                return name
        raise ValueError(f"{self.path} has no 'text' or 'sentence' {what} ({what}s: {', '.join(columns) or 'none'}); "
                         "pass text_column=NAME")

    def handles(self) -> Iterator[tuple[list[str], int | str | None]]:
        columns = [self.text_column] + ([self.label_column] if self.label_column else [])
        read = _tokens if self.tokenizer is None else _text
        for where, row in self.reader.rows(columns):
            yield (read(row[self.text_column], f"{where} of {self.path}"),
                   _label(row[self.label_column]) if self.label_column else None)

    def scan(self, handles: list, rows: list[tuple] | None = None) -> tuple[str, list]:
        # (one string per shard: tokens joined by US, the label after RS, rows ended by GS; every token is a str; a
        # text kept as written for a tokenizer starts with STX)
        text = "".join(f"{chr(2) + tokens if isinstance(tokens, str) else chr(31).join(tokens)}{chr(30)}{label!r}"
                       f"{chr(29)}" for tokens, label in handles)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32], [label for _, label in handles]

    def describe(self) -> dict:
        return {"source": "text file", "format": self.path.suffix.lower(), "text_column": self.text_column,
                "label_column": self.label_column}


# -------------------------------------------------------------------------------------------- datasets
class DatasetSource(Source):
    """A ``torch.utils.data.Dataset`` or a sequence: items are token ids / token strings / image tensors,
    or ``(item, label)`` tuples (as ``ImageFolder`` gives). Paths come from ``dataset.samples`` when the
    dataset has them (``ImageFolder``). ``vocabulary``, ``unk``, ``lengths``, ``tokenizer``: see :class:`Source`
    (with a tokenizer, items are texts: strings, or lists of words already split)."""

    def __init__(self, data, limit: int | None = None, *, vocabulary=None, unk: str = "<unk>", lengths: bool = False,
                 tokenizer=None):
        super().__init__(limit, vocabulary=vocabulary, unk=unk, lengths=lengths, tokenizer=tokenizer)
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
        self.kind = input_kind(first)
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
            elif self.tokenizer is not None:
                rows.append((_text_item(item, index), label))
            else:
                rows.append((_ids_or_tokens(item, index), label))
        return rows

    def describe(self) -> dict:
        return {"source": type(self.data).__name__, "rows": len(self.data)}


def input_kind(item) -> str:
    """``"image"`` for a floating-point tensor, else ``"text"`` (token ids or token strings): the one place in
    seqlrp.dataset that decides what an item is."""
    return "image" if isinstance(item, torch.Tensor) and item.is_floating_point() else "text"


def _split(item) -> tuple[Any, int | str | None]:
    if isinstance(item, tuple):
        if len(item) != 2:
            raise ValueError(f"dataset items must be x or (x, label), got a tuple of {len(item)}")
        x, label = item
        return x, _label(label.item() if isinstance(label, torch.Tensor) and label.numel() == 1 else label)
    return item, None


def _ids_or_tokens(item, index: int) -> list:
    if isinstance(item, str):
        return item.split()
    if isinstance(item, torch.Tensor):
        if item.is_floating_point() or item.dim() != 1:
            raise ValueError(f"text item {index} must be a 1-D tensor of token ids, got {item.dtype} of shape "
                             f"{tuple(item.shape)}")
        return item.tolist()
    if isinstance(item, Sequence) and not isinstance(item, (bytes, bytearray)):
        tokens = list(item)
        words = [isinstance(t, str) for t in tokens]
        ids = [isinstance(t, int) and not isinstance(t, bool) for t in tokens]
        if all(words) or all(ids):
            return tokens
        other = next((t for t, w, d in zip(tokens, words, ids, strict=True) if not (w or d)), None)
        mixed = "token ids and words" if other is None else f"a {type(other).__name__}"
        raise ValueError(f"text item {index} mixes {mixed}; an item is either token ids (ints) or words (strings), "
                         "not both")
    raise TypeError(f"text item {index} must be token ids or token strings, got {type(item).__name__}")


def _text_item(item, index: int) -> str | list[str]:
    """A text item for a tokenizer: a string as written, or a list of words already split."""
    if isinstance(item, str):
        return item
    if isinstance(item, Sequence) and not isinstance(item, (bytes, bytearray)) and all(isinstance(t, str)
                                                                                       for t in item):
        return list(item)
    raise TypeError(f"text item {index} must be a text (a string, or a list of words) for tokenizer=, got "
                    f"{type(item).__name__}" + (" (token ids: leave tokenizer= out and pass vocabulary=)"
                                                if isinstance(item, (torch.Tensor, Sequence)) else ""))


class ImageFolderSource(Source):
    """Images in the ``ImageFolder`` layout (``DIR/class/image.jpg``), loaded per shard by ``loader(path)``."""

    kind = "image"

    def __init__(self, root: str | os.PathLike, loader: Callable[[Path], torch.Tensor], extensions: Sequence[str],
                 limit: int | None = None):
        self.where = str(Path(root).resolve())
        from torchvision.datasets.folder import make_dataset

        super().__init__(limit)
        self.root, self.loader = Path(root), loader
        if not self.root.is_dir():
            raise ValueError(f"{self.root} is not a folder; expected the ImageFolder layout DIR/class/image")
        self.class_names = sorted(entry.name for entry in os.scandir(self.root) if entry.is_dir())
        if not self.class_names:
            raise ValueError(f"{self.root} has no class folders; expected the ImageFolder layout "
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

    def scan(self, handles: list[tuple[str, int]], rows: list[tuple] | None = None) -> tuple[str, list]:
        hasher = RowHasher()
        for path, label in handles:
            hasher.update(os.path.relpath(path, self.root), label, _file_digest(Path(path)))
        return hasher.hexdigest(), [label for _, label in handles]

    def describe(self) -> dict:
        return {"source": "image folder", "classes": self.class_names}


def as_source(data, limit: int | None = None, **text) -> Source:
    """``data`` as a :class:`Source` (a Source is returned as it is; its own limit applies). ``text``:
    ``vocabulary``, ``unk``, ``lengths``, ``tokenizer`` of a new :class:`DatasetSource`."""
    return data if isinstance(data, Source) else DatasetSource(data, limit, **text)
