"""One small reader per text input format, keyed by the file's suffix (:data:`READERS`).

A reader knows three things about its format: the names of its columns (``columns()``), its rows as
``(where, {column: value})`` in file order (``rows()``: ``where`` names the row in an error, e.g.
``"line 3"``), and what a column is called (``what``: "column" or "field"). Everything else (picking the
text column, turning values into tokens and labels) is :class:`seqlrp.dataset.sources.TextFile`'s, the
same for every format. A new format is one class here and one entry in :data:`READERS`.

Line-based formats accept every line end (``\\n``, ``\\r\\n`` and a lone ``\\r``); CSV and TSV follow
RFC 4180 quoting (a quoted field may hold the delimiter, quotes and line breaks) and fields of any size.
Library messages name the Python keywords (``text_column=``); the command line translates them.
"""

from __future__ import annotations

import abc
import csv
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


def _decoded(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line with its line end) of a UTF-8 file; ``\\n``, ``\\r\\n`` and a lone ``\\r`` all end a line."""
    number = 0
    with open(path, "rb") as file:
        for raw in file:
            try:
                text = raw.decode("utf-8-sig" if number == 0 else "utf-8")
            except UnicodeDecodeError as error:
                line = number + 1 + raw[:error.start].count(b"\r")
                raise ValueError(f"input file {path} is not UTF-8 text (byte 0x{raw[error.start]:02x} on line "
                                 f"{line}); re-encode it as UTF-8 (e.g. iconv -t UTF-8)") from None
            for line in _LONE_CR.split(text) if "\r" in text else (text,):
                if line:
                    number += 1
                    yield number, line


def _check_binary(path: Path) -> None:
    with open(path, "rb") as file:
        if b"\x00" in file.read(65536):
            raise ValueError(f"input file {path} looks binary (it contains NUL bytes); expected UTF-8 text in the "
                             f"{path.suffix} format")


class Reader(abc.ABC):
    """The rows of one input file (subclasses: one per format)."""

    what = "column"
    has_columns = True

    def __init__(self, path: Path):
        self.path = path

    @abc.abstractmethod
    def columns(self) -> list[str]:
        """The file's column names."""

    @abc.abstractmethod
    def rows(self, columns: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(where, {column: value})`` for the requested ``columns``, in file order (blank lines skipped)."""


class LinesReader(Reader):
    """``.txt``: one sentence per line (blank lines are not rows); the single column is ``text``."""

    has_columns = False

    def __init__(self, path: Path):
        super().__init__(path)
        _check_binary(path)

    def columns(self) -> list[str]:
        return ["text"]

    def rows(self, columns: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        for number, line in _decoded(self.path):
            if line.strip():
                yield f"line {number}", {"text": line.rstrip("\r\n")}


@contextmanager
def _any_field_size():
    """csv's field size limit (131,072 characters by default) lifted while a file is read."""
    old = csv.field_size_limit()
    try:
        csv.field_size_limit(sys.maxsize)
    except OverflowError:  # (a C long of 32 bits)
        csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)


class DelimitedReader(Reader):
    """``.csv`` / ``.tsv``: a header row, then one row per record; RFC 4180 quotes (fields may span lines)."""

    delimiter = ","

    def __init__(self, path: Path):
        super().__init__(path)
        _check_binary(path)

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        lines = _decoded(self.path)
        with _any_field_size():
            reader = csv.reader((line for _, line in lines), delimiter=self.delimiter, strict=True)
            start = 1
            while True:
                try:
                    record = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    raise ValueError(f"line {reader.line_num} of {self.path} is not valid "
                                     f"{self.path.suffix.lstrip('.').upper()} ({error}); quote a field that holds "
                                     f"the delimiter, a quote or a line break (\"...\", a quote inside doubled: \"\")"
                                     ) from None
                if record and any(field.strip() for field in record):
                    yield start, record
                start = reader.line_num + 1

    def columns(self) -> list[str]:
        for _, header in self._records():
            return header
        raise ValueError(f"no rows in {self.path} (the file is empty)")

    def rows(self, columns: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        records = self._records()
        header = next(records, (0, []))[1]
        where = [header.index(c) for c in columns]
        for line, record in records:
            if len(record) != len(header):
                shown = "TAB" if self.delimiter == "\t" else self.delimiter
                raise ValueError(f"line {line} of {self.path} has {len(record)} field(s) but the header has "
                                 f"{len(header)}; check the delimiter ({shown})")
            yield f"line {line}", {c: record[i] for c, i in zip(columns, where, strict=True)}


class CsvReader(DelimitedReader):
    delimiter = ","


class TsvReader(DelimitedReader):
    delimiter = "\t"


class JsonlReader(Reader):
    """``.jsonl``: one JSON object per line; the columns are the first object's fields."""

    what = "field"

    def __init__(self, path: Path):
        super().__init__(path)
        _check_binary(path)

    def _objects(self) -> Iterator[tuple[int, dict]]:
        for number, line in _decoded(self.path):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"line {number} of {self.path} is not JSON ({error.msg}); .jsonl holds one JSON "
                                 "object per line") from None
            if not isinstance(value, dict):
                raise ValueError(f"line {number} of {self.path} is a JSON {type(value).__name__}, not an object; "
                                 "each line must be an object such as {\"text\": \"...\"}")
            yield number, value

    def columns(self) -> list[str]:
        for _, value in self._objects():
            return list(value)
        raise ValueError(f"no rows in {self.path} (the file is empty)")

    def rows(self, columns: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        text = columns[0]
        for number, value in self._objects():
            if text not in value:
                raise ValueError(f"line {number} of {self.path} has no field {text!r} (fields: "
                                 f"{', '.join(value) or 'none'}); every line needs it (text_column=NAME)")
            yield f"line {number}", {c: value.get(c) for c in columns}


class ParquetReader(Reader):
    """``.parquet``: a string or list-of-strings text column, read in record batches."""

    def columns(self) -> list[str]:
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(self.path).schema_arrow.names)
        except Exception as error:  # noqa: BLE001 - any unreadable file is a user error
            raise ValueError(f"input file {self.path} is not a readable Parquet file ({error})") from None

    def rows(self, columns: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        import pyarrow.parquet as pq

        row = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=8192, columns=columns):
            values = [batch.column(i).to_pylist() for i in range(len(columns))]
            for record in zip(*values, strict=True):
                yield f"row {row}", dict(zip(columns, record, strict=True))
                row += 1


#: the reader of each suffix
READERS: dict[str, type[Reader]] = {".txt": LinesReader, ".tsv": TsvReader, ".csv": CsvReader,
                                    ".jsonl": JsonlReader, ".parquet": ParquetReader}


def reader_for(path: Path) -> Reader:
    """The reader of ``path``'s suffix; an unknown suffix is an error listing the known ones."""
    cls = READERS.get(path.suffix.lower())
    if cls is None:
        raise ValueError(f"input file {path} has an unknown format {path.suffix or '(no suffix)'!r}; expected one of "
                         f"{', '.join(READERS)}")
    return cls(path)
