"""Ranks, shards and the manifest: which process explains which rows, and what a re-run may resume.

- **Shards** are fixed-size runs of the input order: shard ``k`` holds rows ``[k*S, (k+1)*S)``, and
  rank ``r`` of ``W`` explains the shards with ``k % W == r``. Which rank explains a shard never
  changes its rows or its part file, so a run may be resumed with another number of processes.
- **The manifest** ``_manifest.json`` records the run's identity (:mod:`seqlrp.dataset.identity`: the
  input's content shard by shard, the vocabulary, every rule parameter, the model's parameters, buffers
  and code, the row count and the shard size). A re-run with the same identity completes the shards
  whose part file is missing; another one is refused, naming what changed, unless ``overwrite``.
- **Ranks** come from ``torch.distributed`` when a process group is initialized (torchrun sets the
  environment; :func:`init_from_env` joins it: gloo on CPU, nccl with one GPU per local rank).
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ..files import atomic_write
from .identity import first_difference
from .writer import PART_GLOB, SUCCESS, part_name, remove_temporaries

MANIFEST = "_manifest.json"
FORMAT_VERSION = 2


@dataclass(frozen=True)
class Ranks:
    """This process's place: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def device(self) -> torch.device:
        """``cuda:local_rank`` when CUDA is available, else the CPU."""
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_from_env(timeout_hours: float = 24.0) -> Ranks:
    """Join the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ...).

    Returns :class:`Ranks`; a plain process (no ``WORLD_SIZE`` > 1) does not touch torch.distributed.
    The backend is nccl when CUDA is available (device = local rank), else gloo. The long timeout lets
    ranks with more shards finish (a failed rank is stopped by torchrun, not by the timeout).
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=timedelta(hours=timeout_hours))
    return current()


def current() -> Ranks:
    """The ranks of the initialized process group, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Ranks()


def barrier(ranks: Ranks) -> None:
    """Wait for every rank; a rank that stopped (rank 0 refusing ``out``) is named instead of gloo's error."""
    if not ranks.distributed:
        return
    try:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[ranks.local_rank])
        else:
            dist.barrier()
    except RuntimeError as error:
        raise RuntimeError(f"rank {ranks.rank}: another rank stopped before the run started (its error is printed "
                           f"by that rank; {type(error).__name__})") from error


@dataclass(frozen=True)
class Plan:
    """``rows`` rows in shards of ``shard_size``."""

    rows: int
    shard_size: int

    @property
    def shards(self) -> int:
        return -(-self.rows // self.shard_size)

    def rows_of(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.rows))

    def owned(self, shard: int, ranks: Ranks) -> bool:
        return shard % ranks.world == ranks.rank


def _visible(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith((".", "_")))


def read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["signature"], manifest["rows"], manifest["shard_size"]  # noqa: B018 - the keys must be there
        return manifest
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a seqlrp manifest ({type(error).__name__}: {error}); pass overwrite=True to "
                         "start the output afresh, or choose another out=") from None


def _what_changed(old: dict, new: dict) -> str:
    """What differs between two run identities, in words (the first shard whose input differs, by rows)."""
    old_shards, new_shards = old.get("shards"), new.get("shards")
    rest = first_difference({k: v for k, v in old.items() if k != "shards"},
                            {k: v for k, v in new.items() if k != "shards"})
    if rest:
        key, _, detail = rest.partition(": ")
        names = {"model.state": "the model's parameters or buffers", "model.code": "the model's code",
                 "model.config": "the model's configuration", "composite": "the rule preset (--composite)",
                 "options.tokenizer": "the tokenizer",
                 "options.token_limit": "the most tokens a text is explained with",
                 "options.vocabulary": "the vocabulary", "options.unk": "the unknown-word token",
                 "options.lengths": "how the model is called (lengths)", "options": "the rule parameters",
                 "rows": "the number of input rows", "input": "how the input is read",
                 "columns": "the output's columns (written by another seqlrp version)"}
        label = next((v for k, v in names.items() if key == k or key.startswith(k + ".")), key)
        return f"{label} changed ({key}: {detail})"
    if isinstance(old_shards, list) and isinstance(new_shards, list):
        for k, (a, b) in enumerate(zip(old_shards, new_shards, strict=False)):
            if a != b:
                size = old.get("shard_size") or 0
                return f"the input's content changed (shard {k}, rows {k * size} to {(k + 1) * size - 1}, reads " \
                       "differently)"
    return "the run's identity changed"


def check_out(out: Path, signature: dict, overwrite: bool, shards: int | None = None) -> dict | None:
    """Refuse an ``out`` that cannot take this run; returns the manifest to resume, or None (a fresh start).

    ``overwrite`` replaces a seqlrp dataset (also one of another run); it never deletes files that seqlrp did
    not write, so a folder holding other files is refused. A resumed dataset must have the same identity
    (:mod:`seqlrp.dataset.identity`) and no part file beyond its ``shards``.
    """
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"out={out} exists and is not a folder; pass a folder for the Parquet dataset")
    if not out.exists():
        return None
    if (out / MANIFEST).exists():
        if overwrite:
            return None
        manifest = read_manifest(out)
        parts = [name for name in _visible(out) if fnmatch.fnmatch(name, PART_GLOB)]
        if manifest["signature"] != signature and not parts:
            return None  # (a run that stopped before its first part: nothing of it to keep or to mix)
        if manifest["signature"] != signature:
            changed = _what_changed(manifest["signature"], signature)
            raise ValueError(f"out={out} holds a dataset of another run ({changed}), whose rows are not this run's; "
                             "run the same command to resume it, pass overwrite=True to recompute it, or choose "
                             "another out=")
        if shards is not None:
            stray = [name for name in parts if name not in {part_name(k) for k in range(shards)}]
            if stray:
                raise ValueError(f"out={out} holds {', '.join(stray[:3])} beyond the {shards} shard(s) of this run "
                                 "(readers would see those rows too); delete it, or pass overwrite=True to recompute "
                                 "the dataset")
        return manifest
    visible = _visible(out)
    foreign = [name for name in visible if not fnmatch.fnmatch(name, PART_GLOB)]
    if foreign:
        raise ValueError(f"out={out} is not empty ({', '.join(foreign[:3])}) and holds no seqlrp dataset (no "
                         f"{MANIFEST}); pass a new or empty folder")
    if visible and not overwrite:
        raise ValueError(f"out={out} holds part files but no {MANIFEST} (an interrupted overwrite?); pass "
                         "overwrite=True to start it afresh")
    return None


def start_out(out: Path, signature: dict, plan: Plan, meta: dict, resume: dict | None) -> None:
    """Make ``out`` ready (rank 0 only): remove what a fresh start replaces and the temporaries of a killed
    run, then write the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    if resume is None:  # (in this order: a start killed half-way leaves no manifest beside old parts)
        (out / SUCCESS).unlink(missing_ok=True)
        (out / MANIFEST).unlink(missing_ok=True)
        for path in out.glob(PART_GLOB):
            path.unlink()
    remove_temporaries(out)
    manifest = {"seqlrp_dataset": FORMAT_VERSION, "signature": signature, "rows": plan.rows,
                "shard_size": plan.shard_size, "shards": plan.shards, **meta}
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
