"""The output folder: one Parquet part file per shard, each written atomically, and ``_SUCCESS`` last.

A part file is written under a hidden temporary name in the output folder (``.part-00003.parquet.*.part``:
readers skip names starting with ``.`` and ``_``), flushed to disk and renamed (see
:func:`seqlrp.files.atomic_write`), so a visible ``part-*.parquet`` is always complete: a run killed at
any point leaves complete parts and at most a hidden temporary, which the next run removes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..files import atomic_write

SUCCESS = "_SUCCESS"
PART_GLOB = "part-*.parquet"


def part_name(shard: int) -> str:
    """``part-00003.parquet`` for shard 3."""
    return f"part-{shard:05d}.parquet"


def part_path(out: Path, shard: int) -> Path:
    """``out/part-00003.parquet`` for shard 3."""
    return out / part_name(shard)


def write_part(out: Path, shard: int, table: pa.Table) -> int:
    """Write shard ``shard`` atomically; returns the part file's size in bytes."""
    path = atomic_write(part_path(out, shard), lambda file: pq.write_table(table, file, compression="zstd"))
    return path.stat().st_size


def part_is_done(out: Path, shard: int, rows: int) -> bool:
    """Whether shard ``shard`` has its part file with ``rows`` rows; a part that is unreadable or holds
    another number of rows is an error naming the file and the fix (it was not written by seqlrp)."""
    path = part_path(out, shard)
    if not path.exists():
        return False
    try:
        found = pq.read_metadata(path).num_rows
    except Exception as error:  # noqa: BLE001 - any unreadable part is reported the same way
        raise ValueError(f"{path} is not a readable Parquet file ({type(error).__name__}: {error}); seqlrp writes "
                         "parts atomically, so it was changed by something else: delete it and run the same "
                         "command again to recompute that shard") from None
    if found != rows:
        raise ValueError(f"{path} holds {found} rows but its shard has {rows}; delete it and run the same command "
                         "again to recompute that shard")
    return True


def remove_temporaries(out: Path) -> int:
    """Remove hidden temporaries left by a killed run; returns how many."""
    removed = 0
    for path in out.glob(".part-*.parquet.*.part"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def output_bytes(out: Path) -> int:
    """Total size of the part files."""
    return sum(p.stat().st_size for p in out.glob(PART_GLOB))


def write_success(out: Path, summary: dict) -> Path:
    """``out/_SUCCESS`` (a small JSON summary), written atomically: the dataset is complete."""
    return atomic_write(out / SUCCESS, json.dumps(summary, indent=1, sort_keys=True) + "\n")

