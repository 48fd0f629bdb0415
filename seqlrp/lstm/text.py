"""``explain_text()``: token relevance for any classifier built from nn.Embedding -> LSTM/GRU -> Linear."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..core.checks import check_eval_mode, check_not_meta, check_tokens, needs_lengths
from ..core.composites import Composite
from ..core.copying import modules, named_modules, structural_copy, unwrap
from ..core.explanation import Explanation
from ..core.labels import check_labels
from ..core.pipeline import CoverageWarning, Inputs, Mode, propagate, user_stacklevel
from ..core.session import Session
from ..core.stochastic import unwatched
from .composites import ArrasLSTM
from .recurrent import RecurrentForward


@dataclass
class TextExplanation(Explanation):
    """Relevance of each token (and each embedding dimension).

    Attributes
    ----------
    token_relevance : Tensor
        ``(B, T)``: the embedding relevance summed over the embedding dimensions.
    embedding_relevance : Tensor
        ``(B, T, E)``: the same as ``relevance``.
    lengths : Tensor or None
        ``(B,)`` when given.
    tokens : list of list of str or None
        The token strings, when given (for reports).
    initial_state_relevance : Tensor
        ``(B,)``: relevance of the recurrent layers' initial states (non-zero only with bias_factor > 0).
        With ``bias_factor=1``: ``token_relevance.sum(1) + initial_state_relevance == target score``.
    direction_relevance : Tensor or None
        ``(D, B, T, E)``: the first recurrent layer's input relevance split by direction.
    """

    token_relevance: Tensor | None = None
    embedding_relevance: Tensor | None = None
    lengths: Tensor | None = None
    tokens: list[list[str]] | None = None
    initial_state_relevance: Tensor | None = None
    direction_relevance: Tensor | None = None


def text_composite(rules: Mapping | None, epsilon: float, bias_factor: float) -> Composite:
    """The LSTM-LRP rules of Arras et al. 2017 under the overrides ``rules``: :class:`ArrasLSTM`."""
    return ArrasLSTM(epsilon=epsilon, bias_factor=bias_factor, rules=rules)


def check_token_ids(token_ids: Tensor, vocabulary: int, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
    if not isinstance(token_ids, Tensor):
        raise TypeError(f"token_ids must be a torch.Tensor of integer ids, got {type(token_ids).__name__}")
    if token_ids.is_floating_point() or token_ids.is_complex() or token_ids.dtype == torch.bool:
        raise TypeError(f"token_ids must be integer ids (torch.long), got dtype {token_ids.dtype}; "
                        "look tokens up in your vocabulary first")
    check_not_meta(token_ids, "token_ids")
    token_ids = token_ids.long()  # (uint8 / int32 ids index an embedding once widened)
    if token_ids.dim() == 1:
        token_ids = token_ids[None]
    if token_ids.dim() != 2 or token_ids.numel() == 0:
        raise ValueError(f"token_ids must have shape (batch, time) and not be empty, got {tuple(token_ids.shape)}")
    batch, steps = token_ids.shape
    low, high = token_ids.aminmax()  # (one reduction for both bounds)
    low, high = int(low), int(high)
    if low < 0:
        raise ValueError(f"token_ids contain a negative id ({low}); ids index the embedding (0..{vocabulary - 1})")
    if high >= vocabulary:
        raise ValueError(f"token_ids contain id {high}, but the embedding has only {vocabulary} rows "
                         f"(valid ids 0..{vocabulary - 1}): map unknown words to an <unk> id")
    if lengths is not None:
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"lengths must be {batch} integers (one per sequence), got {lengths!r}") from None
        if lengths.is_floating_point() or lengths.dtype == torch.bool or lengths.shape != (batch,):
            raise ValueError(f"lengths must be {batch} integers (one per sequence), got {tuple(lengths.shape)} "
                             f"of dtype {lengths.dtype}")
        if int(lengths.min()) < 1:
            raise ValueError(f"lengths must be >= 1; sequence {int(lengths.argmin())} has length "
                             f"{int(lengths.min())} (drop empty sequences before explaining)")
        if int(lengths.max()) > steps:
            raise ValueError(f"lengths must be <= the padded length T={steps}; sequence {int(lengths.argmax())} "
                             f"has length {int(lengths.max())}")
        lengths = lengths.long()
    return token_ids, lengths


def _find_embedding(model: nn.Module, embedding: str | None) -> str:
    names = [n for n, m in named_modules(model) if isinstance(m, nn.Embedding)]
    if embedding is not None:
        if embedding not in names:
            raise ValueError(f"no nn.Embedding named {embedding!r}; embeddings in the model: {names}")
        return embedding
    if not names:
        raise ValueError("explain_text needs a model with an nn.Embedding (token ids -> vectors); "
                         "for models on float inputs use seqlrp.explain")
    if len(names) > 1:
        raise ValueError(f"the model has several nn.Embedding modules {names}; name the token embedding "
                         "with embedding='...'")
    return names[0]


_UNSET: Any = object()  # (the deprecated keywords' default: tells "not given" from a value)


def explain_text(
    model: nn.Module,
    token_ids: Tensor,
    target: int | Tensor | Callable | None = None,
    composite: Composite | Mapping | None = None,
    *,
    lengths: Tensor | None = None,
    tokens: list[list[str]] | None = None,
    seed: str | Callable = "logit",
    embedding: str | None = None,
    fused: bool = True,
    labels: Sequence[str] | None = None,
    tokenizer: Any = None,
    rules: Mapping | None = _UNSET,
    epsilon: float = _UNSET,
    bias_factor: float = _UNSET,
) -> TextExplanation:
    """Token relevance of a text classifier: nn.Embedding -> nn.LSTM/nn.GRU -> ... -> logits.

    The model is used as it is (never modified): its forward takes ``token_ids`` (and ``lengths``
    when given), may pack sequences, index the last state, use ``h_n``, concatenate directions, pool
    over time with max or mean, and end in linear layers and activations.

    Parameters
    ----------
    model : nn.Module
        The classifier, in eval mode.
    token_ids : Tensor
        ``(B, T)`` integer ids (padded).
    target : None, int, Tensor or callable
        As in :func:`seqlrp.explain` (default: the predicted class).
    composite : Composite or mapping, optional
        The rules, as in :func:`seqlrp.explain`. Default :class:`seqlrp.lstm.ArrasLSTM` ``()`` (Arras et al.
        2017: ε = 1e-3 and ``bias_factor`` 0 on every linear map and the cell sum, signal-takes-all on the
        gates); ``ArrasLSTM(bias_factor=1.0)`` conserves: token relevance + initial-state relevance == target
        score. A mapping is taken as overrides on top of ``ArrasLSTM()``: module types / names as in a
        composite, and the cell keys ``seqlrp.lstm.GATE_LINEAR`` (linear maps of a cell), ``CELL_SUM``,
        ``GATE_PRODUCT``.
    lengths : Tensor, optional
        ``(B,)`` true lengths; passed to ``model(token_ids, lengths)``.
    tokens : list of list of str, optional
        Token strings, kept with the result for reports.
    seed : {"logit", "one"} or callable
        Relevance put on the output (default: the target logit).
    embedding : str, optional
        Qualified name of the token embedding when the model has several.
    fused : bool
        Use the fused LSTM path when the rules allow it (ε everywhere); False forces the unrolled
        composition of wrapped ops (same numbers, slower).
    labels : sequence of str, optional
        Class names, one per output class (a wrong count is a ValueError); kept as ``.labels``.
    tokenizer : optional
        Hugging Face models only: the tokenizer that made ``token_ids`` (a tokenizer's output); it writes the words
        of ``.words`` (``convert_tokens_to_string``).
    rules, epsilon, bias_factor
        Deprecated (one release, DeprecationWarning): ``composite=ArrasLSTM(epsilon, bias_factor, rules=rules)``.

    Returns
    -------
    TextExplanation
        ``.token_relevance (B, T)``, ``.embedding_relevance (B, T, E)``, ``.output``, ``.target``,
        ``.coverage``, ``.initial_state_relevance (B,)``, ``.direction_relevance (D, B, T, E)``.

    Examples
    --------
    >>> import torch, seqlrp
    >>> model = seqlrp.lstm.BiLSTMClassifier(10, 4, 3, 2).eval()
    >>> result = seqlrp.explain_text(model, torch.tensor([[1, 2, 3]]), composite=seqlrp.lstm.ArrasLSTM(epsilon=1e-3))
    >>> result.token_relevance.shape
    torch.Size([1, 3])

    A Hugging Face model (a transformer, a recurrent family's causal LM such as ``MambaForCausalLM``, or a
    Hugging Face backbone under a head such as :class:`seqlrp.recurrent.SequenceClassifier`) or a tokenizer's
    output goes to :func:`seqlrp.transformers.explain_transformer` (``lengths``: taken as right padding, the
    ``attention_mask`` they stand for; ``composite``: default by family,
    :class:`~seqlrp.recurrent.RecurrentLRP` or :class:`~seqlrp.transformers.AttnLRP`; a causal LM explained at
    each sequence's last real token, ``target`` a vocabulary id) and returns its ``TransformerExplanation``.
    """
    from ..transformers.text import explain_transformer, is_hf_batch, is_hf_model  # (transformers: optional)

    if is_hf_batch(token_ids) or is_hf_model(model):
        batch = token_ids if is_hf_batch(token_ids) else {"input_ids": token_ids}
        if lengths is not None:
            batch = _lengths_as_mask(batch, lengths)
        result = explain_transformer(model, batch, target, composite=composite, seed=seed, tokenizer=tokenizer)
        if tokens is not None and result.tokens is None:
            result.tokens = check_tokens(tokens, tuple(result.relevance.shape), None)
        result.labels = check_labels(labels, result.output.shape[1])
        return result
    if tokenizer is not None:
        raise TypeError("tokenizer= is for Hugging Face models (a tokenizer's output as token_ids); this model takes "
                        "token ids: pass tokens= to name them")
    composite = text_rules(composite, rules, epsilon, bias_factor)
    session = Session(composite, fused=fused)
    result = run_text(model, token_ids, target, lengths=lengths, session=session, seed=seed, tokens=tokens,
                      embedding=embedding)
    result.labels = check_labels(labels, result.output.shape[1])
    return result


def _lengths_as_mask(batch: Mapping, lengths) -> dict:
    """``lengths`` for a Hugging Face model: the right-padding ``attention_mask`` they stand for."""
    if batch.get("attention_mask") is not None:
        raise ValueError("give a Hugging Face model either attention_mask (in the batch) or lengths=, not both")
    ids = batch["input_ids"]
    if not isinstance(ids, Tensor) or ids.dim() != 2:
        raise TypeError("input_ids must be an integer tensor (B, T)")
    _, lengths = check_token_ids(ids, int(ids.max()) + 1, lengths)
    mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None]
    return {**batch, "attention_mask": mask.long()}


def text_rules(composite: Composite | Mapping | None, rules=_UNSET, epsilon=_UNSET, bias_factor=_UNSET) -> Composite:
    """The composite of :func:`explain_text` from ``composite=`` or the deprecated keywords."""
    old = {k: v for k, v in (("rules", rules), ("epsilon", epsilon), ("bias_factor", bias_factor)) if v is not _UNSET}
    if old:
        if composite is not None:
            raise TypeError(f"give either composite= or the deprecated {', '.join(f'{k}=' for k in old)}, not both: "
                            "put them in the composite, e.g. composite=seqlrp.lstm.ArrasLSTM(epsilon=..., "
                            "bias_factor=...)")
        warnings.warn(
            f"explain_text({', '.join(f'{k}=' for k in old)}...) is deprecated and will be removed in the next "
            "release; pass composite=seqlrp.lstm.ArrasLSTM(epsilon=..., bias_factor=..., rules=...) instead",
            DeprecationWarning, stacklevel=user_stacklevel())
        return ArrasLSTM(**{"epsilon": 1e-3, "bias_factor": 0.0, **old})
    if composite is None or isinstance(composite, Composite):
        return _default_arras() if composite is None else composite
    if isinstance(composite, Mapping):
        return ArrasLSTM(rules=composite)
    raise TypeError(f"composite must be a Composite or a mapping of module types/names to rules, got {composite!r}")


@functools.cache
def _default_arras() -> ArrasLSTM:
    """``ArrasLSTM()``, built once (composites are read-only)."""
    return ArrasLSTM()


class EmbeddingLeaf(Inputs):
    """Token ids through the model's ``nn.Embedding``: the lookup's output becomes the leaf (the text seam).

    The wrapped copy's embedding looks the ids up with the (detached) weight and returns the vectors as a
    leaf tensor; relevance is read there, per token (summed over the embedding dimensions), and the
    recurrent layers' learned/zero initial states are reported as sinks.
    """

    unexplained = "the model's output does not depend on the token embeddings: nothing to explain"

    def __init__(self, copy: nn.Module, model: nn.Module, embedding_name: str, token_ids: Tensor,
                 lengths: Tensor | None, tokens=None):
        self.model, self.embedding_name, self.ids, self.lengths, self.tokens = model, embedding_name, token_ids, \
            lengths, tokens
        self.batch, self.shape = token_ids.shape[0], tuple(token_ids.shape)
        self.embedding = model.get_submodule(embedding_name)
        self.leaves: list[Tensor] = []
        copy.get_submodule(embedding_name).__dict__["forward"] = self._lookup
        self.packed = _watch_packing(copy)

    def _lookup(self, ids: Tensor) -> Tensor:
        module = self.embedding
        # seqlrp's own deterministic lookup of the ids (no signal yet): outside the functional rules and the
        # stochastic watch, like the recurrent kernels (3 ops less through Python dispatch per call)
        with torch._C.DisableTorchFunction(), unwatched():
            weight = module.weight.detach()
            if module.max_norm is not None:  # renormalizes in place: never on the user's weight
                weight = weight.clone()
            vectors = F.embedding(ids, weight, module.padding_idx, module.max_norm, module.norm_type,
                                  module.scale_grad_by_freq, module.sparse)
            leaf = vectors.requires_grad_(True)
        self.leaves.append(leaf)
        return leaf

    def forward_args(self) -> tuple:
        return (self.ids,) if self.lengths is None else (self.ids, self.lengths)

    def leaf(self) -> Tensor:
        if len(self.leaves) != 1:
            raise ValueError(f"the embedding {self.embedding_name!r} was called {len(self.leaves)} times in one "
                             "forward; explain_text needs exactly one lookup of the tokens")
        return self.leaves[0]

    def sinks(self, session: Session | None) -> list[Tensor]:
        recurrent = session.recurrent if session is not None else []
        return [leaf for r in recurrent for leaf in r.initial_leaves]

    def forward_failed(self, model, error: Exception) -> Exception | None:
        if isinstance(error, TypeError):
            if self.lengths is None and needs_lengths(error):
                return TypeError(needs_lengths(error, type(self.model).__name__))
            if self.lengths is not None and _takes_one_argument(self.model):
                return TypeError(f"lengths were given but {type(self.model).__name__}.forward takes only token ids; "
                                 "call without lengths or let forward accept (token_ids, lengths)")
            return None
        return ValueError(f"the model's forward failed on token_ids of shape {self.shape}: {error}")

    def readback(self, result: Explanation, gradient: Tensor, sink_relevance, session, mode: str) -> TextExplanation:
        relevance, lengths = result.relevance, self.lengths
        if lengths is None:
            _warn_read_padding(self.ids, self.embedding.padding_idx, self.packed)
        else:
            positions = torch.arange(self.ids.shape[1], device=relevance.device)[None, :]
            padding = positions >= lengths.to(relevance.device)[:, None]
            if bool((relevance.ne(0).any(-1) & padding).any()):  # (no boolean indexing: one host read)
                warnings.warn("padded positions received relevance: the model reads padding (pack the sequences with "
                              "the lengths, e.g. nn.utils.rnn.pack_padded_sequence)", CoverageWarning,
                              stacklevel=user_stacklevel())
        initial_total = relevance.new_zeros(relevance.shape[0])
        for state in sink_relevance:  # (layers * directions, B, d) each
            if state is not None:
                initial_total = initial_total + state.detach().sum(dim=(0, 2))
        direction = None
        recurrent = session.recurrent if session is not None else []
        if recurrent:
            direction = recurrent[0].direction_relevance()  # (D, B, T, E)
            if direction is not None and direction.shape[1:3] != relevance.shape[:2]:
                direction = None  # (the first recurrent layer does not read the embeddings' (B, T) directly)
        token = gradient.pow(2).sum(-1) if mode == "gradient" else relevance.sum(-1)
        return TextExplanation(
            relevance=relevance, output=result.output, target=result.target, coverage=result.coverage,
            seed=result.seed, calls=result.calls, parameter_relevance=result.parameter_relevance,
            token_relevance=token, embedding_relevance=relevance,
            lengths=lengths, tokens=self.tokens, initial_state_relevance=initial_total, direction_relevance=direction,
        )


def run_text(model: nn.Module, token_ids: Tensor, target, *, lengths, session: Session | None, seed,
             tokens=None, embedding=None, mode: Mode = "lrp") -> TextExplanation:
    """Shared by explain_text and the text baselines (``session=None``: the plain gradient)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = unwrap(model)
    check_eval_mode(model)
    embedding_name = _find_embedding(model, embedding)
    token_ids, lengths = check_token_ids(token_ids, model.get_submodule(embedding_name).num_embeddings, lengths)
    tokens = check_tokens(tokens, tuple(token_ids.shape), lengths)
    wrapped = session.wrap(model) if session is not None else structural_copy(model)
    inputs = EmbeddingLeaf(wrapped, model, embedding_name, token_ids, lengths, tokens)
    return propagate(wrapped, inputs, target, seed, session, mode=mode, warn_coverage=session is not None)


class PaddingWarning(UserWarning):
    """Padding tokens were read by the model: a sentence's explanation depends on the batch it is in."""


def _watch_packing(wrapped: nn.Module) -> list[bool]:
    """Record, per call of a recurrent layer of ``wrapped`` (a copy), whether its input was packed."""
    seen: list[bool] = []
    for module in modules(wrapped):
        if isinstance(module, nn.RNNBase):
            forward = module.__dict__.get("forward")
            if isinstance(forward, RecurrentForward):  # (a session's handler records it itself: no hook to run)
                forward.packed_calls = seen
            else:
                module.register_forward_pre_hook(lambda m, args: seen.append(isinstance(args[0], PackedSequence)))
    return seen


def _warn_read_padding(token_ids: Tensor, padding_idx: int | None, packed: list[bool]) -> None:
    """Warn when sequences end in ``padding_idx`` tokens, no lengths were passed, and a layer read them."""
    if padding_idx is None or (packed and all(packed)):
        return  # no padding id, or every recurrent layer saw packed sequences (the model packs them itself)
    padded = (token_ids[:, -1] == padding_idx).nonzero().flatten().tolist()
    if padded:
        warnings.warn(
            f"{len(padded)} sequence(s) (e.g. row {padded[0]}) end in padding tokens (padding_idx={padding_idx}) and "
            "no lengths were passed, so the model read the padding: their explanation differs from that of the "
            "unpadded sentence and depends on the batch. Pass lengths= (and pack the sequences in forward), or "
            "batch sentences of equal length", PaddingWarning, stacklevel=user_stacklevel())


def text_gradient(model: nn.Module, token_ids: Tensor, target: int | Tensor | Callable | None = None, *,
                  lengths: Tensor | None = None, tokens: list[list[str]] | None = None,
                  seed: str | Callable = "one", embedding: str | None = None) -> TextExplanation:
    r"""Sensitivity analysis for text: ``embedding_relevance`` is :math:`\partial f_c/\partial x_t`, and
    ``token_relevance`` its squared norm :math:`\|\partial f_c/\partial x_t\|^2` (Arras et al.)."""
    return run_text(model, token_ids, target, lengths=lengths, session=None, seed=seed, tokens=tokens,
                    embedding=embedding, mode="gradient")


def text_gradient_x_input(model: nn.Module, token_ids: Tensor, target: int | Tensor | Callable | None = None, *,
                          lengths: Tensor | None = None, tokens: list[list[str]] | None = None,
                          seed: str | Callable = "one", embedding: str | None = None) -> TextExplanation:
    r"""Gradient x input for text: :math:`x_t \odot \partial f_c/\partial x_t`, summed per token."""
    return run_text(model, token_ids, target, lengths=lengths, session=None, seed=seed, tokens=tokens,
                    embedding=embedding, mode="gradient_x_input")


def _takes_one_argument(model: nn.Module) -> bool:
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) <= 1 and not any(p.kind == p.VAR_POSITIONAL for p in params)
