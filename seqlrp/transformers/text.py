"""``explain_transformer``: token and word relevance of a Hugging Face text model for a tokenizer's output.

The explained input is the stack of the embedding tables' outputs: the word (input) embeddings and, where the
model has them, the position and token-type embeddings. In the session's copy of the model (never the user's),
each of these ``nn.Embedding`` modules returns its slice of that stack, so the model runs on its own
``input_ids`` / ``attention_mask`` / ``token_type_ids`` (a decoder's classification head still finds the last
non-pad token) while the relevance reaching each table is measured separately. One forward: each table's own lookup
becomes its slot of the stack as the model runs (a model calling a table twice is run twice: a capture forward
first, then the explained one):

* ``result.relevance`` -- ``(B, T)``: relevance at the input embeddings, summed over the features, per token;
* ``result.embedding_shares`` -- ``{name: (B, T)}``: what reached the position / token-type embeddings (reported
  like ``initial_state_relevance``, never dropped);
* ``result.words`` -- word pieces merged into words with the tokenizer's ``word_ids()`` (relevance summed),
  special tokens ([CLS], [SEP], <s>, ...) kept apart as their own entries with ``special=True``;
* ``result.parameter_relevance`` -- ``{name: (B,)}``: relevance that reached parameters the forward uses directly;
  ``result.absorbed()`` -- ``(B,)``: what the rules' biases and ε absorbed. ``total() + parameters + absorbed``
  is the explained logit (nothing leaves unreported).

The explained output. A classifier's logits ``(B, C)`` are explained as they are. A causal language model's
logits ``(B, T, V)`` (``...ForCausalLM``, ``GPT2LMHeadModel``: a model that can generate) are read at each
sequence's last real token (the last 1 of ``attention_mask``; left and right padding alike): the explained
output is the next-token distribution ``(B, V)`` after the sentence, and ``target`` is a vocabulary id (an int,
one per example, or None: the predicted next token). ``result.read_at`` ``(B,)`` says which position was read.

The default composite is chosen by the model's family: :class:`~seqlrp.recurrent.RecurrentLRP` for the recurrent
families (Mamba, Mamba2, RecurrentGemma, RWKV, xLSTM; :mod:`seqlrp.recurrent.text`), which also refuses padding the
family cannot honour, :class:`~seqlrp.transformers.AttnLRP` otherwise; ``result.coverage`` names it.

``mode="gradient"`` / ``"gradient_x_input"`` give the gradient baselines on the same input (no rules: a plain copy
of the model): per token the squared norm of the gradient (as :func:`seqlrp.baselines.text_gradient`) or
gradient × input summed over the features.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core.checks import check_eval_mode
from ..core.composites import Composite, as_composite
from ..core.copying import modules, release, structural_copy, unwrap
from ..core.explanation import Explanation
from ..core.pipeline import MODES, Mode, TensorInputs, propagate
from ..core.session import Session
from ..recurrent.text import MASK_UNUSED, check_padding, family_of, last_real
from .composites import AttnLRP

#: names of embedding tables whose relevance is reported apart from the tokens'
_EXTRA_EMBEDDINGS = ("position_embeddings", "token_type_embeddings", "wpe", "embed_positions")
_BATCH_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Word:
    """One word of a sentence: its text, relevance (the sum of its pieces'), token positions, whether it is a
    special token ([CLS], [SEP], padding excluded)."""

    text: str
    relevance: float
    positions: tuple[int, ...]
    special: bool = False


@dataclass
class TransformerExplanation:
    """Token relevance of a transformer text classifier (see the module docstring)."""

    relevance: Tensor
    embedding_relevance: Tensor = field(repr=False)
    embedding_shares: dict[str, Tensor]
    attention_mask: Tensor = field(repr=False)
    explanation: Explanation = field(repr=False)
    tokens: list[list[str]] | None = None
    word_ids: list[list[int | None]] | None = field(default=None, repr=False)
    special: Tensor | None = field(default=None, repr=False)
    words: list[list[Word]] | None = None
    #: ``(B,)``: the position whose next-token logits were explained (a causal LM), None for a classifier
    read_at: Tensor | None = None
    #: class names for reports and the notebook view (:func:`seqlrp.explain_text` sets them from ``labels=``)
    labels: list[str] | None = field(default=None, repr=False)

    @property
    def token_relevance(self) -> Tensor:
        """``(B, T)``: the same as ``relevance`` (the name :class:`~seqlrp.lstm.text.TextExplanation` uses)."""
        return self.relevance

    @property
    def parameter_relevance(self) -> dict[str, Tensor]:
        """Relevance that reached parameters the forward uses directly: name -> ``(B,)`` (see
        :attr:`seqlrp.Explanation.parameter_relevance`)."""
        return self.explanation.parameter_relevance

    def absorbed(self) -> Tensor:
        r"""``(B,)``: the relevance the rules absorbed, :math:`\sum_{\text{ops}} (R_\text{out} - R_\text{in})`
        (biases and ε under the ε rule); needs ``record="sums"`` (the default).

        ``total() + sum(parameter_relevance) + absorbed()`` equals the relevance put on the output (the target
        logit): the accounting that nothing left unreported."""
        rows = self.explanation.conservation()
        absorbed = self.relevance.new_zeros(self.relevance.shape[0])
        for row in rows:
            absorbed = absorbed + (row.relevance_out - row.relevance_in).to(absorbed.dtype)
        return absorbed

    @property
    def output(self) -> Tensor:
        return self.explanation.output

    @property
    def target(self) -> Tensor:
        return self.explanation.target

    @property
    def coverage(self):
        return self.explanation.coverage

    @property
    def seed(self) -> Tensor | None:
        """The relevance put on the output, ``(B, C)``."""
        return self.explanation.seed

    def conservation(self):
        return self.explanation.conservation()

    def total(self) -> Tensor:
        """Per example: token relevance + the embedding shares (the relevance that reached the input layer)."""
        total = self.relevance.sum(1)
        for share in self.embedding_shares.values():
            total = total + share.sum(1)
        return total

    def _repr_html_(self) -> str:
        """The notebook view (Jupyter): each sentence's words coloured by relevance, special tokens grey."""
        from ..viz.notebook import explanation_html

        return str(explanation_html(self))


def _hf_import():
    try:
        import transformers  # noqa: F401
    except ImportError as error:  # pragma: no cover - exercised without the extra
        raise ImportError("explaining a Hugging Face model needs the hf extra: pip install 'seqlrp[hf]' "
                          "(transformers, tokenizers, safetensors)") from error


def is_hf_batch(batch: Any) -> bool:
    """Whether ``batch`` is a tokenizer's output (a mapping with ``input_ids``)."""
    return isinstance(batch, Mapping) and "input_ids" in batch


def is_hf_model(model: Any) -> bool:
    """Whether ``model`` is a Hugging Face model (a ``transformers`` class with input embeddings), or holds one
    under its own head (:class:`seqlrp.recurrent.SequenceClassifier`, a user's ``nn.Module``)."""
    if not isinstance(model, nn.Module):
        return False
    return any(_is_hf_class(module) for module in modules(model))  # (the iterative walk: no generator per module)


def _is_hf_class(module: nn.Module) -> bool:
    return type(module).__module__.startswith("transformers.") and hasattr(module, "get_input_embeddings")


def default_composite(model: nn.Module) -> Composite:
    """:class:`~seqlrp.recurrent.RecurrentLRP` for a model of a recurrent family, :class:`AttnLRP` otherwise."""
    if family_of(model) is not None:
        from ..recurrent.composites import RecurrentLRP

        return RecurrentLRP()
    return AttnLRP()


def explain_transformer(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    target: int | Tensor | Callable | None = None,
    composite: Composite | Mapping | None = None,
    *,
    tokenizer: Any = None,
    seed: str | Callable | None = None,
    record: str = "sums",
    mode: Mode = "lrp",
) -> TransformerExplanation:
    r"""Token and word relevance of a Hugging Face text classifier for a tokenizer's output.

    Parameters
    ----------
    model : nn.Module
        A model returning logits ``(B, C)`` (an ``...ForSequenceClassification``, pooler or last-token head, a
        Hugging Face backbone under a user's head such as :class:`seqlrp.recurrent.SequenceClassifier`, or any
        model whose output has ``.logits`` or is a tensor), or a causal LM's ``(B, T, V)`` (explained at each
        sequence's last real token: the next-token logits), in eval mode. Never modified. A model that is not a
        transformers class is called with the keywords its forward names (``input_ids``, ``attention_mask``,
        ...), or positionally ``(input_ids[, attention_mask])``.
    batch : mapping
        ``tokenizer(texts, padding=True, return_tensors="pt")``: ``input_ids`` ``(B, T)``, and optionally
        ``attention_mask`` and ``token_type_ids``.
    target : None, int, Tensor or callable
        As in :func:`seqlrp.explain` (None: the predicted class); for a causal LM a vocabulary id (None: the
        predicted next token).
    composite : Composite or mapping, optional
        Default by family (:func:`default_composite`): :class:`~seqlrp.recurrent.RecurrentLRP` for Mamba, Mamba2,
        RecurrentGemma, RWKV and xLSTM models, :class:`~seqlrp.transformers.AttnLRP` otherwise;
        :class:`~seqlrp.transformers.CPLRP`, :class:`~seqlrp.recurrent.MambaLRP`; any composite.
    tokenizer : optional
        Used to write the words (``convert_tokens_to_string``); without it word pieces are joined as they are
        (``##`` / ``Ġ`` / ``▁`` markers removed).
    seed, record
        As in :func:`seqlrp.explain` (``seed`` default: the target logit for LRP, 1 for the baselines, as in
        :func:`seqlrp.baselines.gradient`).
    mode : {"lrp", "gradient", "gradient_x_input"}
        LRP with ``composite``, or a baseline on the same inputs and outputs (no rules): the gradient
        (``.relevance``: its squared norm per token, :math:`\|\partial f / \partial x_t\|^2`) or gradient x input
        (summed per token).

    Returns
    -------
    TransformerExplanation
        ``.relevance`` ``(B, T)``, ``.embedding_shares``, ``.words``, ``.tokens``, ``.output``, ``.target``,
        ``.coverage``, ``.conservation()``, ``.parameter_relevance``, ``.absorbed()``, ``.read_at``.

    Raises
    ------
    ValueError
        Padding the model's family cannot be explained with (a left-padded batch for RWKV, xLSTM or
        RecurrentGemma, whose forward ignores ``attention_mask``: pad on the right or explain one length per
        batch), or per-token logits of a model that is not a causal LM.
    """
    _hf_import()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not is_hf_batch(batch):
        raise TypeError("batch must be a tokenizer's output: a mapping with 'input_ids' (and optionally "
                        f"'attention_mask', 'token_type_ids'); got {type(batch).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = unwrap(model)
    check_eval_mode(model)
    ids = batch["input_ids"]
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.is_floating_point():
        raise TypeError("batch['input_ids'] must be an integer tensor (B, T): call the tokenizer with "
                        "return_tensors='pt'")
    inputs = {k: batch[k] for k in _BATCH_KEYS if k in batch and batch[k] is not None}
    mask = inputs.get("attention_mask", torch.ones_like(ids))
    family = family_of(model)
    check_padding(family, mask)
    if family is not None and _is_hf_class(model):
        inputs["use_cache"] = False  # (a cache would hold states whose relevance is not read)
        inputs.pop("token_type_ids", None)  # (no token types in these families: a BERT tokenizer's extra key)
        if family in MASK_UNUSED:
            inputs.pop("attention_mask", None)  # (ignored by its forward, which logs that it is; padding checked)
    call = _caller(model, inputs)

    if seed is None:
        seed = "logit" if mode == "lrp" else "one"
    canonical = model
    if mode == "lrp":
        composite = as_composite(composite if composite is not None else default_composite(model))
        canonical = composite.canonize(model)
    read_at: list[Tensor | None] = [None]

    def logits_of(output) -> Tensor:
        logits = output if isinstance(output, Tensor) else output.logits
        if logits.dim() == 3 and logits.shape[:2] == ids.shape:
            _check_causal(model)
            read_at[0] = last_real(mask).to(logits.device)
            return logits[torch.arange(logits.shape[0], device=logits.device), read_at[0]]
        return logits

    run = _Run(model, canonical, composite if mode == "lrp" else None, call, logits_of, ids.shape, record, mode)
    try:
        result, names = run(target, seed, capture=False)
    except _Refeed:  # (a table called twice, or the input embedding not once on (B, T) ids: the two-forward path)
        result, names = run(target, seed, capture=True)
    per_feature = result.relevance  # (B, K, T, H)
    special = _special_tokens(batch, ids)
    tokens, word_ids = _tokens(batch, ids.shape[0])
    per_token = per_feature.pow(2).sum(-1) if mode == "gradient" else per_feature.sum(-1)  # (B, K, T)
    mask = mask.to(per_token.device)
    relevance = per_token[:, 0] * mask
    shares = {name: per_token[:, k] * mask for k, name in enumerate(names) if k > 0}
    words = None if word_ids is None else [
        _words(tokens[i], word_ids[i], relevance[i], mask[i], tokenizer) for i in range(ids.shape[0])]
    return TransformerExplanation(relevance.detach(), per_feature[:, 0].detach(), shares, mask, result, tokens,
                                  word_ids, special, words, read_at[0])


class _Refeed(Exception):
    """Raised when the single-forward feed cannot reproduce the two-forward one (see :class:`_Run`)."""


class _Run:
    """One explanation of the model at the stack of its embedding tables' outputs ``(B, K, T, H)``, and the names of
    the ``K`` tables; each call on a fresh session and copy.

    ``capture=False`` (one forward): each table's lookup in the explained forward becomes its slot of a leaf
    (:class:`_EmbeddingLeaves`); :class:`_Refeed` when a table is called twice or the input embedding is not
    called once on ``(B, T)`` ids. ``capture=True`` (two forwards, every model): a forward without gradients
    captures the tables' outputs first, then the explained forward reads its inputs from their stack
    (:class:`_EmbeddingFeed`). Both give the same relevance where the first applies (bitwise, tested).
    """

    def __init__(self, model, canonical, composite, call, logits_of, shape, record: str, mode: str):
        self.model, self.canonical, self.composite, self.call, self.logits_of = model, canonical, composite, call, \
            logits_of
        self.shape, self.record, self.mode = shape, record, mode

    def __call__(self, target, seed, capture: bool) -> tuple[Explanation, list[str]]:
        if self.composite is not None:
            session: Session | None = Session(self.composite.bind(self.canonical), record=self.record)
            copy = session.wrap(self.canonical, private_to=self.model)
        else:  # (a baseline: the plain function, on a structural copy whose embedding tables may be fed)
            session, copy = None, structural_copy(self.model)
        options = {"mode": self.mode, "warn_coverage": session is not None}
        try:
            tables = _embedding_tables(copy)
            if capture:
                feed = _EmbeddingFeed(copy, tables)
                with torch.no_grad():
                    stacked = feed.capture(lambda: self.call(copy), self.shape)

                def forward(x: Tensor) -> Tensor:
                    feed.values = x
                    return self.logits_of(self.call(copy))

                return propagate(forward, stacked, target, seed, session, **options), feed.names
            leaves = _EmbeddingLeaves(copy, tables, self.shape)
            result = propagate(lambda: self.logits_of(self.call(copy)), leaves, target, seed, session, **options)
            return result, leaves.names()
        finally:
            release(copy)


class _EmbeddingSlot(torch.autograd.Function):
    r"""``forward(leaf, k, value) = value``; ``backward(g)``: ``g`` in slot ``k`` of the leaf's gradient (zeros
    elsewhere) -- what ``leaf[:, k]`` would do if the leaf held ``value`` there: the relevance of one table's output
    lands in its slot of the stack."""

    @staticmethod
    def forward(ctx, leaf: Tensor, k: int, value: Tensor) -> Tensor:
        ctx.shape, ctx.k = leaf.shape, k
        return value.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        full = grad.new_zeros(ctx.shape)
        full[:, ctx.k] = grad
        return full, None, None


class _EmbeddingLeaves(TensorInputs):
    """The embedding tables' outputs of the explained forward itself as slots of one leaf ``(B, K, T, H)``.

    Each table of ``tables`` (input embedding first) returns its own lookup, expanded to ``(B, T, H)`` and linked to
    its slot of the leaf (:class:`_EmbeddingSlot`, values copied into the slot): the same leaf and the same values as
    :class:`_EmbeddingFeed` without its capture forward. A table whose output is not ``(B or 1, T, H)`` stays a
    constant (as there); a table called twice or of another dtype (:meth:`_lookup`), or an input embedding not
    called once (:meth:`leaf`), raises :class:`_Refeed`. Slots of tables not called are dropped from the relevance.
    A failing forward is reported as for any tensor input (:class:`~seqlrp.core.pipeline.TensorInputs`).
    """

    def __init__(self, copy: nn.Module, tables: dict[str, nn.Embedding], shape: torch.Size):
        self.tables = tables
        batch, self.length = shape
        word = next(iter(tables.values()))
        super().__init__(torch.zeros(batch, len(tables), self.length, word.embedding_dim, dtype=word.weight.dtype,
                                     device=word.weight.device))
        self.calls: dict[str, int] = {}
        self.fed: list[int] = []  # (the slots of the tables fed, in the order of ``tables``)
        for k, (name, module) in enumerate(tables.items()):
            module.__dict__["forward"] = self._lookup(name, k, module)  # (the session's copy, never the user's)

    def _lookup(self, name: str, k: int, module: nn.Embedding):
        def forward(ids: Tensor) -> Tensor:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.calls[name] > 1:
                raise _Refeed(name)
            out = nn.Embedding.forward(module, ids)
            if out.dim() != 3 or out.shape[1] != self.length or out.shape[0] not in (1, self.batch) \
                    or out.shape[-1] != self.x.shape[-1]:
                return out  # (not stacked)
            if out.dtype != self.x.dtype:
                raise _Refeed(name)
            value = out.detach().expand(self.batch, -1, -1)
            with torch.no_grad(), torch._C.DisableTorchFunction():
                self.x[:, k] = value
            self.fed.append(k)
            with torch._C.DisableTorchFunction():
                return _EmbeddingSlot.apply(self.x, k, value)

        return forward

    def forward_args(self) -> tuple:
        return ()

    def leaf(self) -> Tensor:
        if 0 not in self.fed:
            raise _Refeed(next(iter(self.tables)))
        return self.x

    def names(self) -> list[str]:
        fed = sorted(self.fed)
        return [name for k, name in enumerate(self.tables) if k in fed]

    def readback(self, result: Explanation, gradient: Tensor, sink_relevance, session, mode: str) -> Explanation:
        fed = sorted(self.fed)
        if len(fed) < self.x.shape[1]:  # (tables not called, or not fed: no slot)
            result.relevance = result.relevance[:, fed]
        return result


def _check_causal(model: nn.Module) -> None:
    """Per-token logits are explained at the last real token only for a causal LM (a model that generates)."""
    generates = getattr(model, "can_generate", None)
    if callable(generates) and generates() and not getattr(getattr(model, "config", None), "is_encoder_decoder",
                                                           False):
        return
    raise ValueError(f"{type(model).__name__} returns per-token logits (B, T, V) but is not a causal language model; "
                     "explain_text explains a classifier's (B, C) logits or a causal LM's next-token logits: put a "
                     "classification head on it (e.g. seqlrp.recurrent.SequenceClassifier)")


def _caller(model: nn.Module, inputs: dict[str, Any]) -> Callable[[nn.Module], Any]:
    """How to call ``model`` (or its copy) on the batch: keywords for a transformers class or a forward naming
    them, else positionally ``(input_ids[, attention_mask])``."""
    if _is_hf_class(model):
        return lambda copy: copy(**inputs)
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return lambda copy: copy(**inputs)
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return lambda copy: copy(**inputs)
    if "input_ids" in parameters:
        named = {k: v for k, v in inputs.items() if k in parameters}
        return lambda copy: copy(**named)
    args = [inputs["input_ids"]]
    positional = [p for p in parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if "attention_mask" in inputs and len(positional) > 1:
        args.append(inputs["attention_mask"])
    return lambda copy: copy(*args)


def _embedding_tables(model: nn.Module) -> dict[str, nn.Embedding]:
    """The input embedding and the position / token-type embedding tables of ``model`` (qualified names)."""
    get = getattr(model, "get_input_embeddings", None)
    if get is None:  # (a user's head over a Hugging Face backbone: the first transformers model inside)
        inner = next((m for m in model.modules() if _is_hf_class(m)), None)
        get = inner.get_input_embeddings if inner is not None else None
    word = get() if get is not None else None
    if not isinstance(word, nn.Embedding):
        raise TypeError(f"{type(model).__name__}: no input embedding (get_input_embeddings() gave "
                        f"{type(word).__name__}); explain_transformer needs a Hugging Face text model")
    tables = {}
    for name, module in model.named_modules():
        if module is word:
            tables = {name: module, **tables}
        elif isinstance(module, nn.Embedding) and name.rsplit(".", 1)[-1] in _EXTRA_EMBEDDINGS:
            tables[name] = module
    return tables


class _EmbeddingFeed:
    """Makes the copy's embedding tables return slices of the explained tensor ``(B, K, T, H)``."""

    def __init__(self, copy: nn.Module, tables: dict[str, nn.Embedding]):
        self.tables, self.values = tables, None
        self.outputs: dict[str, list[Tensor]] = {}
        self.names: list[str] = []
        for name, module in tables.items():
            module.__dict__["forward"] = self._forward(name, module)  # (the session's copy, never the user's)

    def _forward(self, name: str, module: nn.Embedding):
        def forward(ids: Tensor) -> Tensor:
            if self.values is None:  # capturing: the table's own lookup
                out = nn.Embedding.forward(module, ids)
                self.outputs.setdefault(name, []).append(out)
                return out
            if name not in self.names:
                return nn.Embedding.forward(module, ids)
            return self.values[:, self.names.index(name)]

        return forward

    def capture(self, run: Callable[[], Any], shape: torch.Size) -> Tensor:
        """Run the model once; stack the outputs of the tables called exactly once with a ``(B or 1, T, H)``
        output (the word embedding first)."""
        run()
        batch, length = shape
        parts = []
        for name in self.tables:
            outs = self.outputs.get(name, [])
            if len(outs) != 1 or outs[0].dim() != 3 or outs[0].shape[1] != length or outs[0].shape[0] not in (1, batch):
                if not parts:
                    raise ValueError(f"the input embedding {name!r} was not called once on (B, T) token ids; "
                                     "explain_transformer cannot feed it")
                continue
            if parts and outs[0].shape[-1] != parts[0].shape[-1]:
                continue
            self.names.append(name)
            parts.append(outs[0].expand(batch, -1, -1))
        return torch.stack(parts, 1).detach()


def _tokens(batch, size: int) -> tuple[list[list[str]] | None, list[list[int | None]] | None]:
    tokens = getattr(batch, "tokens", None)
    word_ids = getattr(batch, "word_ids", None)
    try:
        return [tokens(i) for i in range(size)], [word_ids(i) for i in range(size)]
    except (TypeError, ValueError, AttributeError):  # (a plain dict, or a slow tokenizer's output)
        return None, None


def _special_tokens(batch, ids: Tensor) -> Tensor | None:
    word_ids = getattr(batch, "word_ids", None)
    try:
        rows = [word_ids(i) for i in range(ids.shape[0])]
    except (TypeError, ValueError, AttributeError):
        return None
    return torch.tensor([[w is None for w in row] for row in rows], dtype=torch.bool)


def _words(tokens: list[str], word_ids: list[int | None], relevance: Tensor, mask: Tensor, tokenizer) -> list[Word]:
    """Merge a sentence's pieces into words by ``word_ids`` (relevance summed); special tokens apart; padding out."""
    words: list[Word] = []
    current: int | None = None
    for position, (token, word) in enumerate(zip(tokens, word_ids, strict=True)):
        if not bool(mask[position]):
            continue
        value = float(relevance[position])
        if word is None:
            words.append(Word(token, value, (position,), special=True))
            current = None
            continue
        if word == current:
            last = words[-1]
            words[-1] = Word(last.text, last.relevance + value, (*last.positions, position))
        else:
            words.append(Word("", value, (position,)))
            current = word
    for i, w in enumerate(words):
        if not w.special:
            words[i] = Word(_join([tokens[p] for p in w.positions], tokenizer), w.relevance, w.positions)
    return words


def _join(pieces: list[str], tokenizer) -> str:
    if tokenizer is not None and hasattr(tokenizer, "convert_tokens_to_string"):
        return tokenizer.convert_tokens_to_string(pieces).strip()
    text = "".join(p[2:] if p.startswith("##") else p for p in pieces)
    return text.replace("Ġ", " ").replace("▁", " ").strip()
