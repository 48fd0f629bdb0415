"""``explain_dataset()``: explain every row of a dataset, shard by shard, on one or many processes.

Each shard (a fixed-size run of the input order, see :mod:`seqlrp.dataset.sharding`) is explained in
sorted buckets (text: by length, with no work on padding; images: by shape) through
:func:`seqlrp.explain_text` / :func:`seqlrp.explain` (which never change the model), put back in input
order and written as one Parquet part file (:mod:`seqlrp.dataset.writer`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from ..core.explain import explain
from ..lstm.composites import ArrasLSTM
from ..lstm.text import explain_text
from .progress import Progress
from .sharding import Plan, barrier, check_out, current, model_fingerprint, read_manifest, start_out
from .sources import Source, as_source
from .writer import output_bytes, part_is_done, part_path, write_part, write_success

_SCALARS = [("predicted", pa.int64()), ("target", pa.int64()), ("logit", pa.float64()),
            ("probability", pa.float64()), ("relevance_sum", pa.float64())]
TEXT_SCHEMA = pa.schema([("id", pa.int64()), ("tokens", pa.list_(pa.string())), ("label", pa.int64()),
                         ("relevance", pa.list_(pa.float32())), *_SCALARS,
                         ("initial_state_relevance", pa.float64())])
IMAGE_SCHEMA = pa.schema([("id", pa.int64()), ("path", pa.string()), ("label", pa.int64()),
                          ("height", pa.int32()), ("width", pa.int32()), ("relevance", pa.list_(pa.float16())),
                          *_SCALARS])


@dataclass
class Summary:
    """What a run with ``out=`` did.

    Attributes
    ----------
    out : Path
        The Parquet dataset folder.
    rows : int
        Rows of the whole dataset.
    explained : int
        Examples explained by this run, all ranks (resumed parts are not explained again).
    seconds : float
        Wall time of this run on this rank (rank 0: until every rank finished).
    per_rank : list of int
        Examples explained by each rank in this run (only this rank's own on ranks > 0).
    bytes : int
        Size of the part files.
    complete : bool
        Whether every shard has its part file (``_SUCCESS`` was written).
    """

    out: Path
    rows: int
    explained: int
    seconds: float
    per_rank: list[int] = field(default_factory=list)
    bytes: int = 0
    complete: bool = False

    def __str__(self) -> str:
        rate = self.explained / self.seconds if self.seconds > 0 else 0.0
        ranks = ", ".join(str(n) for n in self.per_rank)
        state = "complete" if self.complete else "INCOMPLETE"
        return (f"{self.explained} examples explained in {self.seconds:.1f} s ({rate:.1f} examples/s), per rank: "
                f"{ranks}; dataset {state}: {self.rows} rows, {self.bytes / 1e6:.2f} MB in {self.out}")


def _device(model: nn.Module) -> torch.device:
    parameter = next(itertools.chain(model.parameters(), model.buffers()), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _buckets(keys: np.ndarray, batch_size: int, mixed: bool) -> list[np.ndarray]:
    """Row indices sorted by ``keys`` (stable), cut into batches of at most ``batch_size``; unless ``mixed``,
    a batch never holds two keys (no padding at all)."""
    order = np.argsort(keys, kind="stable")
    if mixed:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    _, starts = np.unique(keys[order], return_index=True)
    bounds = [*starts.tolist(), len(order)]
    return [order[i:min(i + batch_size, b)] for a, b in itertools.pairwise(bounds) for i in range(a, b, batch_size)]


def _scalars(output: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
    output, target = output.detach().double().cpu(), target.detach().cpu()
    return {"predicted": output.argmax(1).numpy(), "target": target.numpy(),
            "logit": output.gather(1, target[:, None])[:, 0].numpy(),
            "probability": torch.softmax(output, 1).gather(1, target[:, None])[:, 0].numpy()}


def _lists(values: list[np.ndarray], sizes: np.ndarray, kind: pa.DataType) -> pa.ListArray:
    offsets = np.zeros(len(sizes) + 1, np.int32)
    np.cumsum(sizes, out=offsets[1:])
    flat = np.concatenate(values) if values else np.zeros(0, kind.to_pandas_dtype())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=kind))


def _assemble(schema: pa.Schema, rows: int, done: list[np.ndarray], pieces: dict[str, list], relevance: pa.Array,
              first: dict[str, pa.Array]) -> pa.Table:
    """Columns computed in bucket order (rows ``done``; other rows null) put back in input order, after the
    columns in ``first`` (already in input order)."""
    order = np.concatenate(done) if done else np.zeros(0, np.int64)
    missing = np.setdiff1d(np.arange(rows), order)  # rows not explained (empty text): null results
    where = np.concatenate([order, missing])
    columns = {"relevance": pa.concat_arrays([relevance, pa.array([[]] * len(missing), relevance.type)])}
    for name, values in pieces.items():
        kind = schema.field(name).type
        flat = np.concatenate(values) if values else np.zeros(0)
        columns[name] = pa.array(np.concatenate([flat, np.zeros(len(missing))]).astype(kind.to_pandas_dtype()),
                                 type=kind, mask=np.r_[np.zeros(len(flat), bool), np.ones(len(missing), bool)])
    back = np.argsort(where, kind="stable")
    computed = pa.table(columns).take(pa.array(back))
    table = pa.table({**first, **{name: computed.column(name) for name in computed.column_names}})
    return table.select(schema.names).cast(schema)


class _TextRows:
    """Token relevance of text rows: exact-length buckets, or sorted mixed-length buckets with ``lengths``."""

    schema = TEXT_SCHEMA

    def __init__(self, model: nn.Module, *, vocabulary, unk: str, lengths: bool, target, rules, epsilon: float,
                 bias_factor: float, batch_size: int):
        self.model, self.lengths, self.target, self.batch_size = model, lengths, target, batch_size
        self.options = {"composite": ArrasLSTM(epsilon=epsilon, bias_factor=bias_factor, rules=rules)}
        if isinstance(vocabulary, Mapping):
            self.to_id = dict(vocabulary)
            self.to_token = [""] * (max(self.to_id.values(), default=-1) + 1)
            for token, index in self.to_id.items():
                self.to_token[index] = token
        elif vocabulary is not None:
            self.to_token = [str(t) for t in vocabulary]
            self.to_id = {t: i for i, t in enumerate(self.to_token)}
        else:
            self.to_id, self.to_token = None, None
        self.unk = self.to_id.get(unk) if self.to_id is not None else None
        self.unk_name = unk

    def _encode(self, tokens: list, row: int) -> tuple[list[str], list[int]]:
        if not tokens or not isinstance(tokens[0], str):
            ids = [int(i) for i in tokens]
            names = [self.to_token[i] if 0 <= i < len(self.to_token) else str(i) for i in ids] \
                if self.to_token is not None else [str(i) for i in ids]
            return names, ids
        if self.to_id is None:
            raise ValueError(f"row {row} holds token strings; pass vocabulary= (token -> id) to look them up")
        ids = [self.to_id.get(word, self.unk) for word in tokens]
        if self.unk is None and None in ids:
            word = tokens[ids.index(None)]
            raise ValueError(f"word {word!r} (row {row}) is not in the vocabulary and there is no "
                             f"{self.unk_name!r} token (pass --unk / unk=)")
        return tokens, ids

    def __call__(self, rows: list[tuple], first_id: int, progress: Callable[[int], None]) -> pa.Table:
        encoded = [self._encode(tokens, first_id + i) for i, (tokens, _) in enumerate(rows)]
        sizes = np.fromiter((len(ids) for _, ids in encoded), np.int64, len(encoded))
        flat = np.fromiter(itertools.chain.from_iterable(ids for _, ids in encoded), np.int64, int(sizes.sum()))
        starts = np.cumsum(sizes) - sizes
        device = _device(self.model)
        done, values, pieces = [], [], {"predicted": [], "target": [], "logit": [], "probability": [],
                                        "relevance_sum": [], "initial_state_relevance": []}
        present = np.flatnonzero(sizes > 0)
        for batch in _buckets(sizes[present], self.batch_size, self.lengths):
            batch = present[batch]
            steps = np.arange(int(sizes[batch].max()))
            mask = steps[None, :] < sizes[batch][:, None]
            ids = torch.from_numpy(flat[np.where(mask, starts[batch][:, None] + steps[None, :], 0)] * mask)
            lengths = torch.from_numpy(sizes[batch]).to(device) if self.lengths else None
            result = explain_text(self.model, ids.to(device), self.target, lengths=lengths, **self.options)
            relevance = result.token_relevance.detach().float().cpu()
            values.append(relevance[torch.from_numpy(mask)].numpy())
            for name, value in _scalars(result.output, result.target).items():
                pieces[name].append(value)
            pieces["relevance_sum"].append((relevance.double() * torch.from_numpy(mask)).sum(1).numpy())
            pieces["initial_state_relevance"].append(result.initial_state_relevance.detach().double().cpu().numpy())
            done.append(batch)
            progress(len(batch))
        progress(len(rows) - len(present))  # (empty rows: nothing to explain)
        order = np.concatenate(done) if done else np.zeros(0, np.int64)
        relevance = _lists(values, sizes[order], pa.float32())
        first = {"id": pa.array(np.arange(first_id, first_id + len(rows)), pa.int64()),
                 "tokens": pa.array([names for names, _ in encoded], pa.list_(pa.string())),
                 "label": pa.array([label for _, label in rows], pa.int64())}
        return _assemble(self.schema, len(rows), done, pieces, relevance, first)


class _ImageRows:
    """Pixel relevance of image rows, batched by shape; the map summed over channels, stored as float16."""

    schema = IMAGE_SCHEMA

    def __init__(self, model: nn.Module, *, composite, target, batch_size: int):
        self.model, self.composite, self.target, self.batch_size = model, composite, target, batch_size

    def __call__(self, rows: list[tuple], first_id: int, progress: Callable[[int], None]) -> pa.Table:
        shapes = [tuple(image.shape) for image, _, _ in rows]
        for i, shape in enumerate(shapes):
            if len(shape) != 3:
                raise ValueError(f"image row {first_id + i} has shape {shape}; expected (channels, height, width)")
        kinds = {shape: k for k, shape in enumerate(sorted(set(shapes)))}
        keys = np.array([kinds[s] for s in shapes], np.int64)
        device = _device(self.model)
        done, values, sizes, pieces = [], [], [], {"predicted": [], "target": [], "logit": [], "probability": [],
                                                   "relevance_sum": [], "height": [], "width": []}
        for batch in _buckets(keys, self.batch_size, mixed=False):
            images = torch.stack([rows[i][0] for i in batch]).to(device)
            result = explain(self.model, images, self.target, self.composite)
            relevance = result.relevance.detach()
            maps = relevance.sum(1).to(torch.float16).cpu().numpy()
            values.append(maps.reshape(-1))
            sizes.append(np.full(len(batch), maps[0].size))
            for name, value in _scalars(result.output, result.target).items():
                pieces[name].append(value)
            pieces["relevance_sum"].append(relevance.double().sum((1, 2, 3)).cpu().numpy())
            pieces["height"].append(np.full(len(batch), maps.shape[1]))
            pieces["width"].append(np.full(len(batch), maps.shape[2]))
            done.append(batch)
            progress(len(batch))
        relevance = _lists(values, np.concatenate(sizes), pa.float16())
        first = {"id": pa.array(np.arange(first_id, first_id + len(rows)), pa.int64()),
                 "path": pa.array([path for _, _, path in rows], pa.string()),
                 "label": pa.array([label for _, label, _ in rows], pa.int64())}
        return _assemble(self.schema, len(rows), done, pieces, relevance, first)


def _rows(source: Source) -> int:
    rows = len(source)
    if rows == 0:
        where = getattr(source, "path", None)
        raise ValueError(f"no rows in {where} (blank lines are not rows)" if where else "data has no rows")
    return rows


def _plain(value):
    """Options as plain JSON values for the manifest (objects by their class name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return type(value).__qualname__


def explain_dataset(
    model: nn.Module,
    data: Source | Sequence | torch.utils.data.Dataset,
    *,
    out: str | Path | None = None,
    target: int | None = None,
    batch_size: int = 256,
    shard_size: int = 4096,
    vocabulary: Mapping[str, int] | Sequence[str] | None = None,
    unk: str = "<unk>",
    lengths: bool = False,
    rules: Mapping | None = None,
    epsilon: float = 1e-3,
    bias_factor: float = 0.0,
    composite=None,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    fingerprint: Mapping | None = None,
    setup_only: bool = False,
) -> pa.Table | Summary | None:
    """Explain every row of ``data``: token relevance for text, pixel relevance for images.

    Rows are explained in shards of ``shard_size`` consecutive rows; in a torch.distributed process
    group (torchrun) rank ``r`` of ``W`` explains shards ``k`` with ``k % W == r`` and writes their part
    files. Within a shard, text is bucketed by length (sorted, no work on padding) and images by shape;
    results are put back in input order. The model is never changed.

    Parameters
    ----------
    model : nn.Module
        In eval mode, on the device to use (inputs are moved to it). Text: ``nn.Embedding -> LSTM/GRU ->
        ...``; images: any model :func:`seqlrp.explain` takes.
    data : Source, sequence or Dataset
        Text: token-id sequences (lists or 1-D tensors) or token strings (with ``vocabulary``); images:
        float tensors ``(C, H, W)``. Items may be ``(x, label)`` (as ``ImageFolder`` gives; its
        ``samples`` give the paths). A :class:`~seqlrp.dataset.sources.Source` streams files.
    out : str or Path, optional
        Folder of the Parquet dataset (resumable, see :mod:`seqlrp.dataset.sharding`); None returns
        the rows as a table (single process only).
    target : int, optional
        Class to explain (default: the predicted class).
    batch_size, shard_size : int
        Rows per explained batch, and rows per shard (= per part file).
    vocabulary : mapping or sequence, optional
        Token -> id (or the list of tokens by id): looks token strings up and names token ids in the
        ``tokens`` column (without it, ids are written as strings).
    unk : str
        The vocabulary's unknown-word token (an unknown word without it is an error).
    lengths : bool
        Call ``model(token_ids, lengths)`` with mixed-length sorted buckets (the model must pack its
        sequences); False: one length per batch, no padding at all.
    rules, epsilon, bias_factor
        As in :func:`seqlrp.explain_text`.
    composite : Composite, optional
        As in :func:`seqlrp.explain` (images).
    limit : int, optional
        Only the first ``limit`` rows (sequences and Datasets; a Source has its own limit).
    overwrite : bool
        Replace an ``out`` made with other options instead of refusing it.
    progress : bool or None
        The tqdm bar on rank 0 (None: when stderr is a terminal).
    fingerprint : mapping, optional
        More values that identify the run in the manifest (the command line passes its files' names,
        sizes and modification times).
    setup_only : bool
        Only check and prepare ``out`` (the manifest) and return None: what a launcher does before it
        starts the processes that explain.

    Returns
    -------
    pyarrow.Table or Summary
        Without ``out``: the rows in input order with the columns of :data:`TEXT_SCHEMA` /
        :data:`IMAGE_SCHEMA`. With ``out``: a :class:`Summary` of the run.
    """
    for name, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(data, Source) and limit is not None:
        raise ValueError("pass limit to the Source (data is a Source with its own limit)")
    source = as_source(data, limit)
    if source.kind == "text":
        rows_of = _TextRows(model, vocabulary=vocabulary, unk=unk, lengths=lengths, target=target, rules=rules,
                            epsilon=epsilon, bias_factor=bias_factor, batch_size=batch_size)
        options = {"lengths": lengths, "rules": _plain(rules), "epsilon": epsilon, "bias_factor": bias_factor,
                   "unk": unk, "vocabulary": len(rows_of.to_token) if rows_of.to_token is not None else None}
    else:
        rows_of = _ImageRows(model, composite=composite, target=target, batch_size=batch_size)
        options = {"composite": _plain(composite)}
    from .. import __version__

    ranks = current()
    started = time.perf_counter()
    if out is None:
        if ranks.distributed:
            raise ValueError("out= is required in a torch.distributed process group: each rank writes its own parts")
        progress_bar = Progress(ranks, _rows(source), 0, progress)
        tables = [rows_of(source.load(handles), k * shard_size, progress_bar.update)
                  for k, handles in enumerate(source.chunks(shard_size))]
        progress_bar.finish()
        return pa.concat_tables(tables)
    out = Path(out)
    signature = {"kind": source.kind, "model": model_fingerprint(model), "target": target, "shard_size": shard_size,
                 "options": options, "input": source.describe(), **_plain(dict(fingerprint or {}))}
    if ranks.rank == 0:
        check_out(out, signature | {"rows": None}, True)  # (a file or a foreign folder: refused before counting)
        plan = Plan(_rows(source), shard_size)
        signature["rows"] = plan.rows
        resume = check_out(out, signature, overwrite)
        start_out(out, signature, plan, {"kind": source.kind, "class_names": source.class_names,
                                         "seqlrp": __version__}, resume)
    if setup_only:
        return None
    barrier(ranks)
    manifest = read_manifest(out)
    if manifest is None:
        raise ValueError(f"rank {ranks.rank} cannot see {out}/_manifest.json written by rank 0: --out must be a "
                         "folder that every rank shares")
    plan = Plan(manifest["rows"], manifest["shard_size"])
    done_rows = sum(len(plan.rows_of(k)) for k in range(plan.shards) if (ranks.rank == 0 or plan.owned(k, ranks))
                    and part_is_done(out, k, len(plan.rows_of(k))))
    progress_bar = Progress(ranks, plan.rows, done_rows if ranks.rank == 0 else 0, progress)
    for k, handles in enumerate(source.chunks(shard_size)):
        if k >= plan.shards:
            break
        if plan.owned(k, ranks) and not part_is_done(out, k, len(plan.rows_of(k))):
            write_part(out, k, rows_of(source.load(handles), k * shard_size, progress_bar.update))
    per_rank = progress_bar.finish()
    complete = all(part_path(out, k).exists() for k in range(plan.shards)) and \
        all(part_is_done(out, k, len(plan.rows_of(k))) for k in range(plan.shards))
    size = output_bytes(out)
    if complete:
        write_success(out, {"rows": plan.rows, "shards": plan.shards, "bytes": size})
    return Summary(out, plan.rows, sum(per_rank), time.perf_counter() - started, per_rank, size, complete)
