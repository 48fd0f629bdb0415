"""Rows of a Hugging Face text model (a source with ``tokenizer=``): word relevance, one Parquet row per text.

Each shard's texts go through :func:`seqlrp.transformers.batching.explain_texts` (each text tokenized alone, batches
of one token count: no padding, so a text's relevance is that of the text explained alone) and
:func:`seqlrp.explain_text`; the rows are put back in input order with the columns of :data:`WORDS_SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
from torch import nn

from ..transformers.batching import batch_size_for, class_names, explain_texts, plan, token_limit
from .run import _SCALARS, PARAMETERS, _label_array, _labelled, _scalars, with_labels

#: per row: the relevance that reached each position / token-type embedding table (summed over the tokens)
SHARES = pa.list_(pa.struct([("name", pa.string()), ("relevance", pa.float64())]))
WORDS_SCHEMA = pa.schema([
    ("id", pa.int64()), ("text", pa.string()), ("label", pa.int64()),
    ("words", pa.list_(pa.string())), ("special", pa.list_(pa.bool_())), ("relevance", pa.list_(pa.float32())),
    ("tokens", pa.list_(pa.string())), ("token_word", pa.list_(pa.int32())),
    ("token_relevance", pa.list_(pa.float32())), *_SCALARS,
    ("embedding_shares", SHARES), ("parameter_relevance", PARAMETERS)])


def _row_words(result, batch, j: int, tokenizer) -> tuple[list[str], list[bool], list[float], list[str], list[int],
                                                           list[float]]:
    """Example ``j`` of a batch: its words, special flags, word relevance; its tokens, each token's word, the token
    relevance (padding left out)."""
    kept = result.attention_mask[j].bool().cpu()
    positions = kept.nonzero().flatten().tolist()
    values = result.relevance[j].detach().double().cpu()
    names = result.tokens[j] if result.tokens is not None else \
        tokenizer.convert_ids_to_tokens(batch["input_ids"][j].tolist())
    token_relevance = [float(values[p]) for p in positions]
    tokens = [names[p] for p in positions]
    if result.words is not None:
        words = result.words[j]
        index = {p: w for w, word in enumerate(words) for p in word.positions}
        return ([w.text for w in words], [w.special for w in words], [w.relevance for w in words], tokens,
                [index[p] for p in positions], token_relevance)
    special = set(getattr(tokenizer, "all_special_tokens", []))  # (no word_ids: every token its own word)
    return (tokens, [t in special for t in tokens], token_relevance, tokens, list(range(len(tokens))),
            token_relevance)


class WordRows:
    """Word relevance of text rows through a Hugging Face model and the source's tokenizer."""

    unknown = 0

    def __init__(self, model: nn.Module, source, *, target, composite, batch_size: int, labels: str = "int64"):
        self.model, self.target, self.composite, self.batch_size = model, target, composite, batch_size
        self.tokenizer = source.tokenizer
        self.schema = with_labels(WORDS_SCHEMA, labels)
        self.limit = token_limit(model, self.tokenizer)
        self.class_names = class_names(model)
        self.truncated = 0

    def __call__(self, rows: list[tuple], first_id: int, progress: Callable[[int], None]) -> pa.Table:
        texts = [text for text, _ in rows]
        schedule = plan(self.tokenizer, texts, batch_size_for(self.model, self.batch_size), self.limit)
        self.truncated += len(schedule.truncated)
        found: dict[int, dict] = {}
        for batch_rows, batch, result in explain_texts(self.model, self.tokenizer, texts, self.target, self.composite,
                                                   schedule=schedule):
            scalars = _scalars(result.output, result.target)
            totals = result.relevance.detach().double().sum(1).cpu().tolist()
            for j, row in enumerate(batch_rows):
                words, special, relevance, tokens, token_word, token_relevance = _row_words(result, batch, j,
                                                                                              self.tokenizer)
                found[row] = {
                    "words": words, "special": special, "relevance": relevance, "tokens": tokens,
                    "token_word": token_word, "token_relevance": token_relevance,
                    **{name: value[j].item() for name, value in scalars.items()}, "relevance_sum": totals[j],
                    "embedding_shares": [{"name": name, "relevance": float(share[j].double().sum())}
                                         for name, share in result.embedding_shares.items()],
                    "parameter_relevance": [{"name": name, "relevance": float(values[j])}
                                            for name, values in result.parameter_relevance.items()]}
            progress(len(batch_rows))
        progress(len(rows) - len(found))  # (blank texts: nothing to explain)
        empty = {"words": [], "special": [], "relevance": [], "tokens": [], "token_word": [], "token_relevance": [],
                 "embedding_shares": [], "parameter_relevance": []}
        columns: dict[str, list] = {name: [] for name in self.schema.names}
        labels = _label_array([label for _, label in rows], self.schema)
        for i, text in enumerate(texts):
            values = found.get(i, empty)
            columns["id"].append(first_id + i)
            columns["text"].append(text if isinstance(text, str) else " ".join(text))
            for name in self.schema.names:
                if name not in ("id", "text", "label"):
                    columns[name].append(values.get(name))
        schema = _labelled(self.schema, labels)
        arrays = {name: labels if name == "label" else pa.array(columns[name], schema.field(name).type)
                  for name in schema.names}
        return pa.table(arrays, schema=schema)


def words_options(rows: WordRows, composite) -> dict:
    """The settings that change a row of a tokenizer's run (its identity; the model's configuration is in the
    model's)."""
    from ..transformers import AttnLRP
    from .identity import describe, tokenizer_identity

    composite = AttnLRP() if composite is None else composite
    return {"rules": describe({"composite": composite}), "tokenizer": tokenizer_identity(rows.tokenizer),
            "token_limit": rows.limit}


__all__ = ["SHARES", "WORDS_SCHEMA", "WordRows", "words_options"]
