"""``report_dataset()``: what a whole explained dataset says, as one self-contained HTML report.

Text: per explained class, the tokens with the highest and the lowest mean relevance (with their
counts; tokens seen fewer than ``min_count`` times are left out), each with a few sentences in which
that token is most relevant (resp. least), shown in context (the table Arras et al. 2017 show for their
SST classifier); and conservation at scale: the relevance sum (plus the initial-state relevance)
against the explained logit, and the distribution of their gap. A Hugging Face model's dataset (a ``words``
column, :data:`seqlrp.dataset.WORDS_SCHEMA`) is read word by word: the tables rank words (special tokens apart,
in a table of their own, and grey in the contexts), the relevance that reached the position / token-type
embeddings is tabled per class and counted in the conservation. Images: the mean relevance map per
class and the images with the most extreme relevance. The dataset is streamed in record batches.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from markupsafe import Markup

from ..viz import Report, grid, token_html
from .sharding import read_manifest
from .writer import SUCCESS

BATCH = 65536
SCATTER_POINTS = 50_000


def _open(path: Path) -> tuple[pads.Dataset, dict]:
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder; pass the out= folder of explain_dataset")
    manifest = read_manifest(path)
    if manifest is None:
        raise ValueError(f"{path} is not a seqlrp dataset (no _manifest.json); pass the out= folder of "
                         "explain_dataset")
    if not (path / SUCCESS).exists():
        raise ValueError(f"{path} is incomplete (no {SUCCESS}): run the same command (or explain_dataset call) "
                         "again to finish it")
    return pads.dataset(path, format="parquet"), manifest


def _name(names: list[str] | None, index) -> str:
    if index is None:
        return "–"
    index = int(index)
    return f"{names[index]} ({index})" if names and 0 <= index < len(names) else str(index)


def token_column(dataset: pads.Dataset | pa.RecordBatch) -> str:
    """The column of the explained units: ``words`` (a Hugging Face model's dataset) or ``tokens``."""
    return "words" if "words" in dataset.schema.names else "tokens"


def _columns(dataset: pads.Dataset) -> list[str]:
    column = token_column(dataset)
    return ["id", "target", column, "relevance"] + (["special"] if column == "words" else [])


def _flat(batch: pa.RecordBatch, special: str = "keep") -> pa.Table:
    """One row per token (word): its class (the row's target), the token, its relevance, the row id and position.
    ``special``: ``"keep"`` every token, ``"drop"`` the special ones, ``"only"`` the special ones (a words dataset)."""
    names = batch.schema.names
    tokens = batch.column(token_column(batch))
    parents = pc.list_parent_indices(tokens)
    starts = np.asarray(tokens.offsets)[:-1]
    parent = np.asarray(parents)
    flat = pa.table({"class": batch.column("target").take(parents), "token": pc.list_flatten(tokens),
                     "relevance": pc.cast(pc.list_flatten(batch.column("relevance")), pa.float64()),
                     "id": batch.column("id").take(parents),
                     "position": pa.array(np.arange(len(parent)) - starts[parent] if len(parent) else [], pa.int64())})
    if special == "keep" or "special" not in names:
        return flat if special != "only" else flat.slice(0, 0)
    flags = pc.list_flatten(batch.column("special"))
    return flat.filter(pc.invert(flags) if special == "drop" else flags)


def token_table(dataset: pads.Dataset, min_count: int, special: str = "drop") -> pa.Table:
    """Per (class, token): mean relevance and count, over every occurrence (streamed, merged per batch); a words
    dataset's special tokens are left out (``special="only"``: only them)."""
    partials = []
    for batch in dataset.to_batches(columns=_columns(dataset), batch_size=BATCH):
        flat = _flat(batch, special)
        partials.append(flat.group_by(["class", "token"]).aggregate([("relevance", "sum"), ("relevance", "count")]))
        if len(partials) > 16:
            partials = [_merge(partials)]
    merged = _merge(partials) if partials else pa.table({"class": pa.array([], pa.int64()),
                                                         "token": pa.array([], pa.string()),
                                                         "relevance_sum": pa.array([], pa.float64()),
                                                         "relevance_count": pa.array([], pa.int64())})
    table = merged.filter(pc.greater_equal(merged["relevance_count"], min_count))
    mean = pc.divide(table["relevance_sum"], pc.cast(table["relevance_count"], pa.float64()))
    return table.append_column("mean", mean)


def _merge(partials: list[pa.Table]) -> pa.Table:
    merged = pa.concat_tables(partials).group_by(["class", "token"]).aggregate(
        [("relevance_sum", "sum"), ("relevance_count", "sum")])
    return merged.rename_columns(["class", "token", "relevance_sum", "relevance_count"])


def _extremes(table: pa.Table, top: int) -> dict[int, dict[str, pa.Table]]:
    """Per class: the ``top`` tokens of highest and of lowest mean relevance."""
    result = {}
    for cls in sorted(pc.unique(table["class"]).to_pylist(), key=lambda c: (c is None, c)):
        rows = table.filter(pc.equal(table["class"], cls))
        result[cls] = {"highest": rows.sort_by([("mean", "descending"), ("token", "ascending")]).slice(0, top),
                       "lowest": rows.sort_by([("mean", "ascending"), ("token", "ascending")]).slice(0, top)}
    return result


def _key(classes, tokens) -> pa.Array:
    return pc.binary_join_element_wise(pc.cast(classes, pa.string()), tokens, "\x1f")


def example_occurrences(dataset: pads.Dataset, chosen: dict[str, int], count: int) -> dict[str, list[tuple]]:
    """For each key ``class\\x1ftoken`` in ``chosen`` (value +1: most relevant, -1: least), the ``count``
    occurrences where that token is most (least) relevant: ``(id, position, relevance)``."""
    keys = pa.array(list(chosen), pa.string())
    sign = dict(chosen)
    kept: pa.Table | None = None
    for batch in dataset.to_batches(columns=_columns(dataset), batch_size=BATCH):
        flat = _flat(batch, "drop")
        flat = flat.append_column("key", _key(flat["class"], flat["token"]))
        flat = flat.filter(pc.is_in(flat["key"], value_set=keys))
        kept = flat if kept is None else pa.concat_tables([kept, flat])
        kept = _best(kept, sign, count)
    found: dict[str, list[tuple]] = {key: [] for key in chosen}
    if kept is not None:
        for key, row, position, value in zip(*(kept[c].to_pylist() for c in ("key", "id", "position", "relevance")),
                                             strict=True):
            found[key].append((row, position, value))
    return found


def _best(flat: pa.Table, sign: dict[str, int], count: int) -> pa.Table:
    """The ``count`` rows per key with the highest ``sign * relevance`` (distinct ids first seen kept)."""
    if flat.num_rows == 0:
        return flat
    keys = flat["key"].to_numpy(zero_copy_only=False)
    score = flat["relevance"].to_numpy() * np.array([sign[k] for k in keys])
    order = np.lexsort((-score, keys))
    sorted_keys = keys[order]
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return flat.take(pa.array(np.sort(order[rank < count])))


def _contexts(rows: dict[int, dict], found: list[tuple], width: int, count: int) -> Markup:
    """Up to ``count`` occurrences ``(id, position, _)`` shown as ±``width`` tokens around the (outlined) token;
    windows with the same tokens are shown once (SST-2's phrases repeat their sentences' words)."""
    shown, seen = [], set()
    for row, position, _ in found:
        tokens, relevance = rows[row].get("words", rows[row].get("tokens")), rows[row]["relevance"]
        special = rows[row].get("special")
        lo, hi = max(0, position - width), min(len(tokens), position + width + 1)
        if (tuple(tokens[lo:hi]), position - lo) in seen or len(shown) == count:
            continue
        seen.add((tuple(tokens[lo:hi]), position - lo))
        html = token_html(tokens[lo:hi], np.asarray(relevance[lo:hi]), focus=position - lo,
                          special=None if special is None else special[lo:hi])
        shown.append(Markup('<div class="context">{}{}{}</div>').format(
            Markup("…") if lo else "", html, Markup("…") if hi < len(tokens) else ""))
    return Markup("").join(shown)


def unknown_words(dataset: pads.Dataset) -> tuple[int, set[str]]:
    """Occurrences of words that were not in the vocabulary (explained as the unknown-word token), and those words."""
    if "unknown" not in dataset.schema.names:
        return 0, set()
    count, words = 0, set()
    for batch in dataset.to_batches(columns=["tokens", "unknown"], batch_size=BATCH):
        positions = batch.column("unknown")
        parents = np.asarray(pc.list_parent_indices(positions))
        if not len(parents):
            continue
        tokens = batch.column("tokens")
        offsets = np.asarray(tokens.offsets)
        where = offsets[parents] - offsets[0] + np.asarray(pc.list_flatten(positions))
        count += len(where)
        words.update(pc.list_flatten(tokens).take(pa.array(where)).to_pylist())
    return count, words


def _special_and_shares(report: Report, dataset: pads.Dataset, names) -> None:
    """A words dataset: per class the mean relevance of each special token, and of each position / token-type
    embedding table (what the words do not carry)."""
    special = token_table(dataset, 1, "only")
    rows = [[_name(names, c), t, float(m), int(n)] for c, t, m, n in
            zip(*(special.sort_by([("class", "ascending"), ("token", "ascending")])[k].to_pylist()
                  for k in ("class", "token", "mean", "relevance_count")), strict=True)]
    if rows:
        report.add_table(["explained class", "special token", "mean relevance", "count"], rows,
                         title="Special tokens (left out of the word tables)")
    sums: dict[tuple, list[float]] = {}
    for batch in dataset.to_batches(columns=["target", "embedding_shares"], batch_size=BATCH):
        for target, shares in zip(batch.column("target").to_pylist(), batch.column("embedding_shares").to_pylist(),
                                  strict=True):
            if target is None:
                continue
            for share in shares:
                total = sums.setdefault((target, share["name"]), [0.0, 0])
                total[0] += share["relevance"]
                total[1] += 1
    if sums:
        report.add_table(["explained class", "embedding table", "mean relevance", "examples"],
                         [[_name(names, c), name, total / count, count] for (c, name), (total, count)
                          in sorted(sums.items(), key=lambda item: (item[0][0], item[0][1]))],
                         title="Relevance reaching the position / token-type embeddings (counted in the "
                               "conservation above, not in the words)")


def _text_report(report: Report, dataset: pads.Dataset, names, *, min_count: int, top: int, examples: int,
                 context: int) -> None:
    column = token_column(dataset)
    unit = "words" if column == "words" else "tokens"
    if column == "words":
        _special_and_shares(report, dataset, names)
    unknown_count, unknown = unknown_words(dataset)
    if unknown_count:
        report.section("Unknown words", f"{unknown_count} word occurrence(s) ({len(unknown)} distinct) were not in the "
                       "vocabulary and were explained as the unknown-word token; they are marked (unknown) below")
    extremes = _extremes(token_table(dataset, min_count), top)
    chosen = {}
    for cls, parts in extremes.items():
        for side, sign in (("lowest", -1), ("highest", 1)):
            for token in parts[side]["token"].to_pylist():
                chosen.setdefault(f"{cls}\x1f{token}", sign)
    occurrences = example_occurrences(dataset, chosen, 3 * examples)  # (more: repeated windows are dropped)
    ids = sorted({row for found in occurrences.values() for row, _, _ in found})
    rows = dataset.to_table(columns=[c for c in _columns(dataset) if c != "target"],
                            filter=pc.field("id").isin(ids)).to_pylist() if ids else []
    by_id = {row["id"]: row for row in rows}
    if not extremes:
        report.section(unit.capitalize(), f"no {unit[:-1]} occurs at least {min_count} times (min_count=) in one "
                       "class")
    for cls, parts in extremes.items():
        for side in ("highest", "lowest"):
            table_rows = []
            columns = (parts[side][c].to_pylist() for c in ("token", "mean", "relevance_count"))
            for rank, (token, mean, count) in enumerate(zip(*columns, strict=True), 1):
                shown = _contexts(by_id, occurrences[f"{cls}\x1f{token}"], context, examples)
                table_rows.append([rank, f"{token} (unknown)" if token in unknown else token, float(mean), int(count),
                                   shown])
            report.add_table(["#", unit[:-1], "mean relevance", "count", "in context"], table_rows,
                             title=f"Class {_name(names, cls)}: {unit} with the {side} mean relevance "
                                   f"(at least {min_count} occurrences)", contexts=True)


def _conservation(report: Report, dataset: pads.Dataset, names, rows: int, text: bool) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    stride = max(1, -(-rows // SCATTER_POINTS))
    present = dataset.schema.names
    parameters = "parameter_relevance" in present  # (datasets written before it have no column)
    initial = text and "initial_state_relevance" in present  # (an LSTM's; a Hugging Face model has none)
    shares = "embedding_shares" in present  # (a Hugging Face model's position / token-type embeddings)
    columns = ["id", "target", "predicted", "label", "logit", "relevance_sum"] + (["initial_state_relevance"]
                                                                                 if initial else []) \
        + (["parameter_relevance"] if parameters else []) + (["embedding_shares"] if shares else [])
    parts = []
    for batch in dataset.to_batches(columns=columns, batch_size=BATCH):  # (every stride-th example)
        keep = (batch.column("id").to_numpy() % stride == 0) & batch.column("target").is_valid().to_numpy(False)
        parts.append(pa.Table.from_batches([batch]).filter(pa.array(keep)))
    table = pa.concat_tables(parts).to_pandas()
    table["explained"] = [_name(names, t) for t in table["target"]]
    total = table["relevance_sum"] + (table["initial_state_relevance"] if initial else 0)
    for name in ("parameter_relevance", "embedding_shares"):
        if name in table:  # relevance that reached parameters (a class token) or embedding tables is received too
            total = total + table[name].map(lambda items: sum(item["relevance"] for item in items))
    table["Σ relevance"] = total
    table["logit − Σ relevance"] = table["logit"] - total
    summary = [["examples (sampled)", f"{len(table)} of {rows}"],
               ["mean logit", float(table["logit"].mean())], ["mean Σ relevance", float(total.mean())],
               ["mean |logit − Σ relevance|", float(table["logit − Σ relevance"].abs().mean())],
               ["correlation(logit, Σ relevance)", float(np.corrcoef(table["logit"], total)[0, 1])
                if len(table) > 1 else float("nan")]]
    labelled = table["label"].notna()
    if labelled.any() and dataset.schema.field("label").type == pa.int64():
        summary.append(["accuracy (predicted = label)",
                        float((table["predicted"][labelled] == table["label"][labelled]).mean())])
    report.add_table(["", "value"], summary, title="Conservation at scale")
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sns.scatterplot(data=table, x="logit", y="Σ relevance", hue="explained", s=8, alpha=0.5, linewidth=0, ax=ax)
    low, high = float(min(table["logit"].min(), total.min())), float(max(table["logit"].max(), total.max()))
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="Σ relevance = logit")
    ax.legend(fontsize=8)
    ax.set_title("relevance sum vs explained logit" + (" (+ initial-state relevance)" if initial else "")
                 + (" (+ parameters)" if parameters else "") + (" (+ position embeddings)" if shares else ""))
    report.add_figure(fig, "Σ relevance vs logit (a point per example; the line is exact conservation)")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    sns.histplot(data=table, x="logit − Σ relevance", hue="explained", bins=60, element="step", ax=ax)
    ax.set_title("what the explanation does not assign (bias, ε, stabilizers)")
    report.add_figure(fig, "distribution of logit − Σ relevance")


def _image_report(report: Report, dataset: pads.Dataset, names, *, examples: int) -> None:
    sums: dict[tuple[int, int], np.ndarray] = {}
    counts: dict[tuple[int, int], np.ndarray] = {}
    classes = 1 + max((c for c in pc.unique(dataset.to_table(columns=["target"])["target"]).to_pylist()
                       if c is not None), default=0)
    for batch in dataset.to_batches(columns=["target", "height", "width", "relevance"], batch_size=1024):
        heights, widths = batch.column("height").to_numpy(), batch.column("width").to_numpy()
        targets = batch.column("target").to_numpy()
        for h, w in set(zip(heights.tolist(), widths.tolist(), strict=True)):
            rows = (heights == h) & (widths == w)
            maps = pc.list_flatten(batch.column("relevance").filter(pa.array(rows))).to_numpy()
            total = sums.setdefault((h, w), np.zeros((classes, h * w)))
            count = counts.setdefault((h, w), np.zeros(classes))
            np.add.at(total, targets[rows], maps.astype(np.float64).reshape(-1, h * w))
            np.add.at(count, targets[rows], 1)
    if sums:
        size = max(counts, key=lambda s: counts[s].sum())
        present = np.flatnonzero(counts[size])
        maps = [(sums[size][c] / counts[size][c]).reshape(size) for c in present]
        report.section("Mean relevance map per explained class",
                       f"{int(counts[size].sum())} images of {size[0]}×{size[1]}")
        report.add_figure(grid(maps, titles=[f"{_name(names, c)}: {int(counts[size][c])}" for c in present]),
                          "mean relevance (channels summed), per class")
    order = dataset.to_table(columns=["id", "relevance_sum"]).sort_by("relevance_sum")
    for side, ids in (("highest", order["id"].to_pylist()[::-1][:examples]),
                      ("lowest", order["id"].to_pylist()[:examples])):
        rows = dataset.to_table(filter=pc.field("id").isin(ids)).to_pylist()
        rows.sort(key=lambda r: ids.index(r["id"]))
        maps = [np.asarray(r["relevance"], np.float64).reshape(r["height"], r["width"]) for r in rows]
        report.section(f"Images with the {side} relevance sum")
        report.add_figure(grid(maps, titles=[f"{r['path'] or r['id']}\n{_name(names, r['target'])} "
                                             f"Σ={r['relevance_sum']:.3g}" for r in rows]),
                          f"{side} Σ relevance")


def report_dataset(path: str | os.PathLike, out: str | os.PathLike, *, min_count: int = 5, top: int = 15,
                   examples: int = 3, context: int = 8, class_names: list[str] | None = None) -> Path:
    """Write the dataset-level report of an ``explain_dataset`` output folder; returns the report's path.

    Parameters
    ----------
    path : str or PathLike
        The ``--out`` folder of ``seqlrp explain-dataset`` (complete: with ``_SUCCESS``).
    out : str or PathLike
        The ``.html`` file to write (atomically).
    min_count : int
        Text: tokens seen fewer times in a class are left out of its tables.
    top : int
        Text: tokens per table.
    examples : int
        Text: sentences shown per token; images: images shown per side.
    context : int
        Text: tokens shown on each side of the token.
    class_names : list of str, optional
        Names of the classes by index (default: the image folder's classes, else the indices).

    Returns
    -------
    Path
        The report file.
    """
    for name, value, least in (("min_count", min_count, 1), ("top", top, 1), ("examples", examples, 1),
                               ("context", context, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            what = "a positive integer" if least else "an integer >= 0 (tokens on each side)"
            raise ValueError(f"{name}= must be {what}, got {value!r}")
    path = Path(path)
    dataset, manifest = _open(path)
    names = class_names or manifest.get("class_names")
    kind = manifest.get("kind", "text")
    report = Report(f"seqlrp dataset report: {path.name}",
                    f"{manifest['rows']} {'sentences' if kind == 'text' else 'images'} from "
                    f"{manifest.get('input_path') or '?'}")
    _conservation(report, dataset, names, manifest["rows"], kind == "text")
    if kind == "text":
        _text_report(report, dataset, names, min_count=min_count, top=top, examples=examples, context=context)
    else:
        _image_report(report, dataset, names, examples=examples)
    return report.save(out)
