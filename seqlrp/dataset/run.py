"""``explain_dataset()``: explain every row of a dataset, shard by shard, on one or many processes.

Each shard (a fixed-size run of the input order, see :mod:`seqlrp.dataset.sharding`) is explained in
sorted buckets (text: by length, with no work on padding; images: by shape) through
:func:`seqlrp.explain_text` / :func:`seqlrp.explain` (which never change the model), put back in input
order and written as one Parquet part file (:mod:`seqlrp.dataset.writer`). Text with a Hugging Face tokenizer
(``TextFile(..., tokenizer=)``) is explained word by word (:mod:`seqlrp.dataset.words`).
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from ..core.explain import explain
from ..core.inputs import model_device
from ..lstm.composites import ArrasLSTM
from ..lstm.text import explain_text
from .identity import RowHasher, describe, model_identity
from .progress import Progress
from .sharding import Plan, barrier, check_out, current, read_manifest, start_out
from .sources import Source, as_source, label_type
from .writer import output_bytes, part_is_done, part_path, write_part, write_success

_SCALARS = [("predicted", pa.int64()), ("target", pa.int64()), ("logit", pa.float64()),
            ("probability", pa.float64()), ("relevance_sum", pa.float64())]
#: per row: one {name, relevance} per parameter that relevance reached (empty when none); a list of structs, not a
#: map: Hugging Face datasets reads no Arrow map
PARAMETERS = pa.list_(pa.struct([("name", pa.string()), ("relevance", pa.float64())]))
TEXT_SCHEMA = pa.schema([("id", pa.int64()), ("tokens", pa.list_(pa.string())), ("unknown", pa.list_(pa.int32())),
                         ("label", pa.int64()),
                         ("relevance", pa.list_(pa.float32())), *_SCALARS,
                         ("initial_state_relevance", pa.float64()), ("parameter_relevance", PARAMETERS)])
IMAGE_SCHEMA = pa.schema([("id", pa.int64()), ("path", pa.string()), ("label", pa.int64()),
                          ("height", pa.int32()), ("width", pa.int32()), ("relevance", pa.list_(pa.float32())),
                          *_SCALARS, ("parameter_relevance", PARAMETERS)])


def with_labels(schema: pa.Schema, kind: str) -> pa.Schema:
    """``schema`` with its ``label`` column of ``kind`` (``"int64"``, or ``"string"`` when a label is not an
    integer)."""
    return schema.set(schema.get_field_index("label"), pa.field("label", pa.string() if kind == "string"
                                                                 else pa.int64()))


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
    unknown : int
        Text: words of the explained rows not in the vocabulary (explained as the unknown-word token; their
        text is kept in ``tokens``; the ``unknown`` column marks them).
    threads : int
        CPU threads torch used on this rank.
    truncated : int or None
        Text with a tokenizer: rows explained by this run (this rank) that had more tokens than the model reads and
        were cut to that (None: not a tokenizer's run).
    """

    out: Path
    rows: int
    explained: int
    seconds: float
    per_rank: list[int] = field(default_factory=list)
    bytes: int = 0
    complete: bool = False
    unknown: int = 0
    threads: int = 0
    truncated: int | None = None

    def __str__(self) -> str:
        rate = self.explained / self.seconds if self.seconds > 0 else 0.0
        ranks = ", ".join(str(n) for n in self.per_rank)
        state = "complete" if self.complete else "INCOMPLETE"
        threads = f", {self.threads} thread(s) per process" if self.threads else ""
        words = f"{self.unknown} unknown word(s) read as the unknown-word token" if self.truncated is None else \
            f"{self.truncated} text(s) truncated to the tokens the model reads"
        return (f"{self.explained} examples explained in {self.seconds:.1f} s ({rate:.1f} examples/s{threads}), per "
                f"rank: {ranks}; {words}; dataset {state}: {self.rows} rows, {self.bytes / 1e6:.2f} MB in {self.out}")


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


def _parameter_rows(maps: list[list], batch: np.ndarray, parameter_relevance: dict[str, torch.Tensor]) -> None:
    """Put each sample's share of ``parameter_relevance`` (name -> (B,) tensor) into ``maps`` at its row."""
    for name, values in parameter_relevance.items():
        for row, value in zip(batch, values.detach().double().cpu().tolist(), strict=True):
            maps[row].append({"name": name, "relevance": value})


def _text_call(composite, deprecated: dict) -> dict:
    """The rule arguments of :func:`seqlrp.explain_text`: ``composite=``, or the deprecated keywords of
    ``explain_dataset`` (epsilon / bias_factor / rules) as a :class:`seqlrp.lstm.ArrasLSTM`."""
    if deprecated:
        if composite is not None:
            raise TypeError(f"give either composite= or the deprecated {', '.join(f'{k}=' for k in deprecated)}, "
                            "not both")
        return {"composite": ArrasLSTM(**deprecated)}
    return {"composite": composite}


class _TextRows:
    """Token relevance of text rows: exact-length buckets, or sorted mixed-length buckets with ``lengths``."""

    def __init__(self, model: nn.Module, source: Source, *, target, call: dict, batch_size: int,
                 labels: str = "int64"):
        self.model, self.target, self.batch_size = model, target, batch_size
        self.lengths, self.call = source.lengths, call
        self.schema = with_labels(TEXT_SCHEMA, labels)
        vocabulary = source.vocabulary
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
        self.unk = self.to_id.get(source.unk) if self.to_id is not None else None
        self.unk_name = source.unk
        self.unknown = 0

    def vocabulary_identity(self) -> str | None:
        """A hash of every token and its id (None without a vocabulary)."""
        if self.to_id is None:
            return None
        hasher = RowHasher()
        for token, index in sorted(self.to_id.items(), key=lambda item: (item[1], item[0])):
            hasher.update(token, index)
        return hasher.hexdigest()

    def _encode(self, tokens: list, row: int) -> tuple[list[str], list[int], list[int]]:
        """Token names, ids and the positions of unknown words of one row."""
        if not tokens or not isinstance(tokens[0], str):
            if any(isinstance(t, str) for t in tokens):
                raise ValueError(f"row {row} mixes token ids and words; a row is either token ids (ints) or words "
                                 "(strings), not both")
            ids = [int(i) for i in tokens]
            names = [self.to_token[i] if 0 <= i < len(self.to_token) else str(i) for i in ids] \
                if self.to_token is not None else [str(i) for i in ids]
            return names, ids, []
        if not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"row {row} mixes words and token ids; a row is either token ids (ints) or words "
                             "(strings), not both")
        if self.to_id is None:
            raise ValueError(f"row {row} holds token strings; pass vocabulary= (token -> id) to look them up")
        ids = [self.to_id.get(word) for word in tokens]
        unknown = [i for i, index in enumerate(ids) if index is None]
        if unknown and self.unk is None:
            raise ValueError(f"word {tokens[unknown[0]]!r} (row {row}) is not in the vocabulary and there is no "
                             f"{self.unk_name!r} token (pass unk=)")
        for i in unknown:
            ids[i] = self.unk
        return tokens, ids, unknown

    def __call__(self, rows: list[tuple], first_id: int, progress: Callable[[int], None]) -> pa.Table:
        encoded = [self._encode(tokens, first_id + i) for i, (tokens, _) in enumerate(rows)]
        sizes = np.fromiter((len(ids) for _, ids, _ in encoded), np.int64, len(encoded))
        flat = np.fromiter(itertools.chain.from_iterable(ids for _, ids, _ in encoded), np.int64, int(sizes.sum()))
        starts = np.cumsum(sizes) - sizes
        device = model_device(self.model)
        done, values, pieces = [], [], {"predicted": [], "target": [], "logit": [], "probability": [],
                                        "relevance_sum": [], "initial_state_relevance": []}
        present = np.flatnonzero(sizes > 0)
        parameters = [[] for _ in rows]
        for batch in _buckets(sizes[present], self.batch_size, self.lengths):
            batch = present[batch]
            steps = np.arange(int(sizes[batch].max()))
            mask = steps[None, :] < sizes[batch][:, None]
            ids = torch.from_numpy(flat[np.where(mask, starts[batch][:, None] + steps[None, :], 0)] * mask)
            lengths = torch.from_numpy(sizes[batch]).to(device) if self.lengths else None
            result = explain_text(self.model, ids.to(device), self.target, lengths=lengths, **self.call)
            relevance = result.token_relevance.detach().float().cpu()
            values.append(relevance[torch.from_numpy(mask)].numpy())
            for name, value in _scalars(result.output, result.target).items():
                pieces[name].append(value)
            pieces["relevance_sum"].append((relevance.double() * torch.from_numpy(mask)).sum(1).numpy())
            pieces["initial_state_relevance"].append(result.initial_state_relevance.detach().double().cpu().numpy())
            _parameter_rows(parameters, batch, result.parameter_relevance)
            done.append(batch)
            progress(len(batch))
        progress(len(rows) - len(present))  # (empty rows: nothing to explain)
        self.unknown += sum(len(unknown) for _, _, unknown in encoded)
        order = np.concatenate(done) if done else np.zeros(0, np.int64)
        relevance = _lists(values, sizes[order], pa.float32())
        first = {"id": pa.array(np.arange(first_id, first_id + len(rows)), pa.int64()),
                 "tokens": pa.array([names for names, _, _ in encoded], pa.list_(pa.string())),
                 "unknown": pa.array([unknown for _, _, unknown in encoded], pa.list_(pa.int32())),
                 "label": _label_array([label for _, label in rows], self.schema),
                 "parameter_relevance": pa.array(parameters, PARAMETERS)}
        return _assemble(_labelled(self.schema, first["label"]), len(rows), done, pieces, relevance, first)


def _labelled(schema: pa.Schema, labels: pa.Array) -> pa.Schema:
    return schema if schema.field("label").type == labels.type else with_labels(schema, "string")


def _label_array(labels: list, schema: pa.Schema) -> pa.Array:
    if schema.field("label").type == pa.string() or label_type(labels) == "string":
        return pa.array([None if label is None else str(label) for label in labels], pa.string())
    return pa.array(labels, pa.int64())


class _ImageRows:
    """Pixel relevance of image rows, batched by shape; the map summed over channels, stored as float32 (float16
    overflowed to inf above 65504)."""

    unknown = 0

    def __init__(self, model: nn.Module, *, composite, target, batch_size: int, labels: str = "int64"):
        self.model, self.composite, self.target, self.batch_size = model, composite, target, batch_size
        self.schema = with_labels(IMAGE_SCHEMA, labels)

    def __call__(self, rows: list[tuple], first_id: int, progress: Callable[[int], None]) -> pa.Table:
        shapes = [tuple(image.shape) for image, _, _ in rows]
        for i, shape in enumerate(shapes):
            if len(shape) != 3:
                raise ValueError(f"image row {first_id + i} has shape {shape}; expected (channels, height, width)")
        kinds = {shape: k for k, shape in enumerate(sorted(set(shapes)))}
        keys = np.array([kinds[s] for s in shapes], np.int64)
        device = model_device(self.model)
        done, values, sizes, pieces = [], [], [], {"predicted": [], "target": [], "logit": [], "probability": [],
                                                   "relevance_sum": [], "height": [], "width": []}
        parameters = [[] for _ in rows]
        for batch in _buckets(keys, self.batch_size, mixed=False):
            images = torch.stack([rows[i][0] for i in batch]).to(device)
            result = explain(self.model, images, self.target, self.composite)
            relevance = result.relevance.detach()
            maps = relevance.sum(1).to(torch.float32).cpu().numpy()
            values.append(maps.reshape(-1))
            sizes.append(np.full(len(batch), maps[0].size))
            for name, value in _scalars(result.output, result.target).items():
                pieces[name].append(value)
            pieces["relevance_sum"].append(relevance.double().sum((1, 2, 3)).cpu().numpy())
            pieces["height"].append(np.full(len(batch), maps.shape[1]))
            pieces["width"].append(np.full(len(batch), maps.shape[2]))
            _parameter_rows(parameters, batch, result.parameter_relevance)
            done.append(batch)
            progress(len(batch))
        relevance = _lists(values, np.concatenate(sizes), pa.float32())
        first = {"id": pa.array(np.arange(first_id, first_id + len(rows)), pa.int64()),
                 "path": pa.array([path for _, _, path in rows], pa.string()),
                 "label": _label_array([label for _, label, _ in rows], self.schema),
                 "parameter_relevance": pa.array(parameters, PARAMETERS)}
        return _assemble(_labelled(self.schema, first["label"]), len(rows), done, pieces, relevance, first)


def _rows(source: Source) -> int:
    rows = len(source)
    if rows == 0:
        where = getattr(source, "path", None)
        raise ValueError(f"no rows in {where} (blank lines are not rows)" if where else "data has no rows")
    return rows


def _scan(source: Source, shard_size: int) -> tuple[int, list[str], str]:
    """Rows, the content hash of every shard and the label type of the whole input (one pass, handles only
    where the source allows)."""
    digests, labels, rows = [], set(), 0
    for handles in source.chunks(shard_size):
        digest, found = source.scan(handles)
        digests.append(digest)
        labels.update(type(label) for label in found)
        rows += len(handles)
    if rows == 0:
        _rows(source)
    return rows, digests, "string" if str in labels else "int64"


_DEPRECATED_TEXT = ("rules", "epsilon", "bias_factor")
_DEPRECATED_SOURCE = ("vocabulary", "unk", "lengths")


def explain_dataset(
    model: nn.Module,
    data: Source | Sequence | torch.utils.data.Dataset,
    composite=None,
    *,
    out: str | Path | None = None,
    target: int | None = None,
    batch_size: int = 256,
    shard_size: int = 4096,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    fingerprint: Mapping | None = None,
    setup_only: bool = False,
    **deprecated,
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
        ...``, or a Hugging Face classifier with its tokenizer in the source (``TextFile(path, tokenizer=tok)``,
        ``DatasetSource(texts, tokenizer=tok)``: word relevance, the columns of
        :data:`seqlrp.dataset.WORDS_SCHEMA`); images: any model :func:`seqlrp.explain` takes.
    data : Source, sequence or Dataset
        The rows: a :class:`~seqlrp.dataset.Source` (:class:`~seqlrp.dataset.TextFile` streams a file,
        :class:`~seqlrp.dataset.DatasetSource` wraps a sequence or Dataset; text sources carry the
        ``vocabulary``, ``unk`` and ``lengths`` settings), or a sequence / Dataset taken as
        ``DatasetSource(data)``. Text: token-id sequences or token strings; images: float tensors
        ``(C, H, W)``; items may be ``(x, label)`` (as ``ImageFolder`` gives; its ``samples`` give the paths).
    composite : optional
        The rules: as in :func:`seqlrp.explain` for images (e.g. ``seqlrp.cnn.EpsilonGammaBox(low, high)``),
        as in :func:`seqlrp.explain_text` for text (default: its LSTM-LRP rules; with a tokenizer
        :class:`seqlrp.transformers.AttnLRP`).
    out : str or Path, optional
        Folder of the Parquet dataset (resumable, see :mod:`seqlrp.dataset.sharding`); None returns
        the rows as a table (single process only).
    target : int, optional
        Class to explain (default: the predicted class).
    batch_size, shard_size : int
        Rows per explained batch, and rows per shard (= per part file).
    limit : int, optional
        Only the first ``limit`` rows (sequences and Datasets; a Source has its own limit).
    overwrite : bool
        Recompute an ``out`` made by another run instead of refusing it.
    progress : bool or None
        The tqdm bar on rank 0 (None: when stderr is a terminal).
    fingerprint : mapping, optional
        More values that identify the run in the manifest.
    setup_only : bool
        Only check and prepare ``out`` (the manifest) and return None: what a launcher does before it
        starts the processes that explain.
    **deprecated
        ``vocabulary``, ``unk``, ``lengths`` (now the source's: ``DatasetSource(data, vocabulary=...)``) and
        ``rules``, ``epsilon``, ``bias_factor`` (now ``composite=``): still taken for one release, with a
        DeprecationWarning.

    Returns
    -------
    pyarrow.Table or Summary
        Without ``out``: the rows in input order with the columns of :data:`TEXT_SCHEMA` /
        :data:`IMAGE_SCHEMA` / :data:`seqlrp.dataset.WORDS_SCHEMA` (a tokenizer's run; ``label`` is a string column
        when a label is not an integer). With ``out``: a :class:`Summary` of the run.

    Notes
    -----
    A run with ``out`` has an identity (:mod:`seqlrp.dataset.identity`): the input's content shard by shard,
    the vocabulary (or the tokenizer's files), every rule parameter, the model's parameters, buffers, code and
    configuration. A re-run resumes only a
    dataset of the same identity; another one is refused, naming what changed, unless ``overwrite``.
    """
    unknown = sorted(set(deprecated) - set(_DEPRECATED_TEXT) - set(_DEPRECATED_SOURCE))
    if unknown:
        raise TypeError(f"explain_dataset() got an unexpected keyword argument {unknown[0]!r}")
    old_text = {k: deprecated[k] for k in _DEPRECATED_TEXT if k in deprecated}
    old_source = {k: deprecated[k] for k in _DEPRECATED_SOURCE if k in deprecated}
    if old_text or old_source:
        moves = ([f"{', '.join(f'{k}=' for k in old_text)} -> composite="] if old_text else []) + \
            ([f"{', '.join(f'{k}=' for k in old_source)} -> the source's (DatasetSource(data, ...), TextFile(path, "
              "...))"] if old_source else [])
        warnings.warn(f"explain_dataset: {'; '.join(moves)}; the old keywords will be removed in the next release",
                      DeprecationWarning, stacklevel=2)
    for name, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(data, Source) and limit is not None:
        raise ValueError("pass limit to the Source (data is a Source with its own limit)")
    if isinstance(data, Source) and old_source:
        raise ValueError(f"data is a Source: give {', '.join(f'{k}=' for k in old_source)} to it")
    source = as_source(data, limit, **old_source)
    ranks = current()
    started = time.perf_counter()
    if out is None:
        if ranks.distributed:
            raise ValueError("out= is required in a torch.distributed process group: each rank writes its own parts")
        rows_of = _rows_of(model, source, composite, old_text, target, batch_size, "int64")
        progress_bar = Progress(ranks, _rows(source), 0, progress)
        tables = [rows_of(source.load(handles), k * shard_size, progress_bar.update)
                  for k, handles in enumerate(source.chunks(shard_size))]
        progress_bar.finish()
        if any(t.schema.field("label").type == pa.string() for t in tables):  # (one label type for all rows)
            tables = [t.cast(with_labels(t.schema, "string")) for t in tables]
        return pa.concat_tables(tables)
    from .. import __version__

    out = Path(out)
    rows_of = _rows_of(model, source, composite, old_text, target, batch_size, "int64")
    signature = {"kind": source.kind, "model": model_identity(model), "target": target, "shard_size": shard_size,
                 "options": _options(source, rows_of, composite, old_text), "input": source.describe(),
                 "columns": rows_of.schema.names,  # (parts of an older layout are not mixed with new ones)
                 **_plain_fingerprint(fingerprint)}
    if ranks.rank == 0:
        check_out(out, signature | {"rows": None}, True)  # (a file or a foreign folder: refused before counting)
        rows, shards, labels = _scan(source, shard_size)
        plan = Plan(rows, shard_size)
        signature |= {"rows": plan.rows, "shards": shards, "labels": labels}
        resume = check_out(out, signature, overwrite, plan.shards)
        start_out(out, signature, plan, {"kind": source.kind,
                                         "class_names": source.class_names or getattr(rows_of, "class_names", None),
                                         "input_path": source.where, "seqlrp": __version__}, resume)
    if setup_only:
        return None
    barrier(ranks)
    manifest = read_manifest(out)
    if manifest is None:
        raise ValueError(f"rank {ranks.rank} cannot see {out}/_manifest.json written by rank 0: out= must be a "
                         "folder that every rank shares")
    rows_of = _rows_of(model, source, composite, old_text, target, batch_size,
                       manifest["signature"].get("labels", "int64"))
    plan = Plan(manifest["rows"], manifest["shard_size"])
    done_rows = sum(len(plan.rows_of(k)) for k in range(plan.shards) if (ranks.rank == 0 or plan.owned(k, ranks))
                    and part_is_done(out, k, len(plan.rows_of(k))))
    progress_bar = Progress(ranks, plan.rows, done_rows if ranks.rank == 0 else 0, progress)
    shards = manifest["signature"].get("shards") or []
    for k, handles in enumerate(source.chunks(shard_size)):
        if k >= plan.shards:
            break
        if plan.owned(k, ranks) and not part_is_done(out, k, len(plan.rows_of(k))):
            rows = source.load(handles)
            _check_shard(source, handles, rows, shards, k, plan, ranks)
            write_part(out, k, rows_of(rows, k * shard_size, progress_bar.update))
    per_rank = progress_bar.finish()
    complete = all(part_path(out, k).exists() for k in range(plan.shards)) and \
        all(part_is_done(out, k, len(plan.rows_of(k))) for k in range(plan.shards))
    size = output_bytes(out)
    if complete:
        write_success(out, {"rows": plan.rows, "shards": plan.shards, "bytes": size})
    return Summary(out, plan.rows, sum(per_rank), time.perf_counter() - started, per_rank, size, complete,
                   rows_of.unknown, torch.get_num_threads(), getattr(rows_of, "truncated", None))


def _check_shard(source: Source, handles: list, rows: list, shards: list, k: int, plan: Plan, ranks) -> None:
    """The rows about to be explained are those the run's identity was computed from (rank 0, before the run)."""
    if k < len(shards) and source.scan(handles, rows)[0] != shards[k]:
        first, last = plan.rows_of(k)[0], plan.rows_of(k)[-1]
        raise ValueError(f"shard {k} (rows {first} to {last}) reads differently on rank {ranks.rank} than when the run "
                         "started: the input changed during the run, the ranks read different copies of it, or the "
                         "data is random (a random transform or augmentation); explain data that reads the same "
                         "every time")


def _rows_of(model, source: Source, composite, old_text: dict, target, batch_size: int, labels: str):
    if source.kind == "text" and getattr(source, "tokenizer", None) is not None:
        from .words import WordRows

        if old_text:
            raise ValueError(f"{', '.join(f'{k}=' for k in old_text)} are LSTM options; a Hugging Face model takes "
                             "composite= (seqlrp.transformers.AttnLRP or CPLRP)")
        return WordRows(model, source, target=target, composite=composite, batch_size=batch_size, labels=labels)
    if source.kind == "text":
        return _TextRows(model, source, target=target, call=_text_call(composite, old_text), batch_size=batch_size,
                         labels=labels)
    if old_text:
        raise ValueError(f"{', '.join(f'{k}=' for k in old_text)} are text options; images take composite=")
    return _ImageRows(model, composite=composite, target=target, batch_size=batch_size, labels=labels)


def _options(source: Source, rows_of, composite, old_text: dict) -> dict:
    """The settings that change a row, described parameter by parameter."""
    if source.kind != "text":
        return {"rules": describe(composite)}
    if getattr(source, "tokenizer", None) is not None:
        from .words import words_options

        return words_options(rows_of, composite)
    composite = rows_of.call["composite"]
    composite = ArrasLSTM() if composite is None else composite
    summary = {name: getattr(composite, name) for name in ("epsilon", "bias_factor") if hasattr(composite, name)}
    return {"rules": describe({**summary, "composite": composite}),
            "lengths": source.lengths, "unk": source.unk,
            "vocabulary": rows_of.vocabulary_identity()}


def _plain_fingerprint(fingerprint: Mapping | None) -> dict:
    return {str(k): describe(v) for k, v in (fingerprint or {}).items()}
