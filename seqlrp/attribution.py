"""A Captum-style interface: ``Attribution(model, composite=...).attribute(inputs, target=...)`` returns a tensor.

Code written for Captum's attribution methods (``captum.attr.LRP(model).attribute(inputs, target=...)``) and
Quantus's ``explain_func`` can call seqlrp unchanged:

>>> attribution = seqlrp.Attribution(model, composite=seqlrp.cnn.EpsilonPlusFlat())
>>> relevance = attribution.attribute(images, target=labels)          # same shape as images
>>> quantus.RegionPerturbation(...)(model, x, y, explain_func=seqlrp.quantus_explain,
...                                 explain_func_kwargs={"composite": seqlrp.cnn.EpsilonPlusFlat()})

Inputs
------
- floating-point tensors (images, vectors): LRP relevance of every input value, the shape of ``inputs``
  (:func:`seqlrp.explain`);
- integer tensors ``(B, T)`` of token ids (a text model, ``nn.Embedding`` first): one relevance per token,
  ``(B, T)`` like the ids — the embedding relevance summed over the embedding dimensions
  (:func:`seqlrp.explain_text`, ``TextExplanation.token_relevance``); ``additional_forward_args=(lengths,)``
  passes the lengths (``model(ids, lengths)``);
- a Hugging Face text model (a transformer, a recurrent family such as ``MambaForCausalLM``, or a backbone under a
  head such as :class:`seqlrp.recurrent.SequenceClassifier`): ``input_ids`` ``(B, T)`` with
  ``additional_forward_args=(attention_mask,)``, or a tokenizer's output (a mapping with ``input_ids``):
  ``(B, T)`` per token (:func:`seqlrp.transformers.explain_transformer`, ``.relevance``); a causal LM is explained
  at each sequence's last real token, ``target`` a vocabulary id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .core import explain
from .core.checks import target_indices
from .core.composites import Composite
from .core.inputs import input_kind
from .core.pipeline import MODES

METHODS = MODES  # (the explainer choice: one name everywhere, seqlrp.core.pipeline.MODES)


def _target(target, batch: int) -> int | Tensor | None:
    """Captum's target forms: None, an int for all samples, or one class per sample (list, tuple, array, tensor)."""
    if target is None:
        return None
    values = target_indices(target)  # (the check explain makes: no strings, bools, floats)
    if values.dim() == 0:
        return int(values)
    if values.dim() == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.shape != (batch,):
        raise ValueError(f"target must be None, an int, or one class index per sample ({batch},), got shape "
                         f"{tuple(values.shape)} (tuples of output indices for multi-dimensional outputs are not "
                         "supported: explain a (B, classes) output)")
    return values.long()


class _WithArgs(nn.Module):
    """``model(x, *args)`` as a one-input module (the model itself is a submodule: its layers keep their rules)."""

    def __init__(self, model: nn.Module, args: tuple):
        super().__init__()
        self.model, self.args = model, args

    def forward(self, x):
        return self.model(x, *self.args)


class Attribution:
    """Captum-style attribution with LRP (or a baseline): ``.attribute(inputs, target)`` -> Tensor.

    Parameters
    ----------
    model : nn.Module
        The classifier, in eval mode (never modified).
    composite : Composite or mapping, optional
        The LRP rules: for float inputs as in :func:`seqlrp.explain` (default :class:`seqlrp.EpsilonEverywhere`),
        for token ids as in :func:`seqlrp.explain_text` (default :class:`seqlrp.lstm.ArrasLSTM`).
    method : {"lrp", "gradient", "gradient_x_input"}
        LRP, or one of the baselines with the same interface (for comparisons in Captum/Quantus code).
    **options
        More keyword arguments of :func:`seqlrp.explain` / :func:`seqlrp.explain_text` (e.g. ``record=``,
        ``fused=``).
    """

    def __init__(self, model: nn.Module, composite: Composite | Mapping | None = None, *, method: str = "lrp",
                 **options: Any):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.model, self.composite, self.method, self.options = model, composite, method, options

    def explanation(self, inputs: Tensor | Mapping, target=None, additional_forward_args=None):
        """The full :class:`seqlrp.Explanation` (or ``TextExplanation``, ``TransformerExplanation``) behind
        :meth:`attribute`."""
        if isinstance(inputs, Mapping) and input_kind(inputs) == "text":  # (a tokenizer's output)
            if additional_forward_args is not None:
                raise ValueError("a tokenizer's output carries its attention_mask: give no additional_forward_args")
            ids = inputs["input_ids"]
            if not isinstance(ids, Tensor) or ids.dim() != 2:
                raise TypeError("inputs['input_ids'] must be a tensor (B, T): call the tokenizer with "
                                "return_tensors='pt'")
            return self._hf(inputs, _target(target, ids.shape[0]))
        if not isinstance(inputs, Tensor):
            raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__} (Captum takes tensors; "
                            "seqlrp.quantus_explain takes numpy arrays)")
        if inputs.dim() == 0:
            raise ValueError("inputs must be a batch (B, ...), got a scalar")
        target = _target(target, inputs.shape[0])
        args = additional_forward_args
        args = () if args is None else tuple(args) if isinstance(args, (tuple, list)) else (args,)
        if input_kind(inputs) == "text":
            return self._text(inputs, target, args)
        # (no .eval() on the wrapper: it would switch the user's model to eval mode; the checks read the model's own)
        model = _WithArgs(self.model, args) if args else self.model
        if self.method == "lrp":
            return explain(model, inputs, target, self.composite, **self.options)
        from . import baselines

        return getattr(baselines, self.method)(model, inputs, target, **self.options)

    def _hf(self, batch: Mapping, target):
        from .transformers.text import explain_transformer

        return explain_transformer(self.model, batch, target, self.composite, mode=self.method, **self.options)

    def _text(self, ids: Tensor, target, args: tuple):
        from .lstm.text import explain_text, text_gradient, text_gradient_x_input
        from .transformers.text import is_hf_model

        if is_hf_model(self.model):
            if len(args) > 1:
                raise ValueError(f"for a Hugging Face model, additional_forward_args may hold only the attention_mask "
                                 f"(B, T), got {len(args)} arguments")
            mask = args[0] if args else None
            if mask is not None and (not isinstance(mask, Tensor) or mask.shape != ids.shape):
                raise ValueError(f"for a Hugging Face model, additional_forward_args is (attention_mask,) of the ids' "
                                 f"shape {tuple(ids.shape)}, got {type(mask).__name__} of shape "
                                 f"{tuple(getattr(mask, 'shape', ()))} (lengths are for nn.LSTM models)")
            return self._hf({"input_ids": ids, **({"attention_mask": mask} if mask is not None else {})}, target)
        if len(args) > 1:
            raise ValueError(f"for token ids, additional_forward_args may hold only the lengths (B,), got {len(args)} "
                             "arguments")
        lengths = args[0] if args else None
        if self.method == "lrp":
            return explain_text(self.model, ids, target, self.composite, lengths=lengths, **self.options)
        function = {"gradient": text_gradient, "gradient_x_input": text_gradient_x_input}[self.method]
        return function(self.model, ids, target, lengths=lengths, **self.options)

    def attribute(self, inputs: Tensor | Mapping, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False):
        """Relevance of ``inputs`` for ``target``, shaped like ``inputs`` (Captum's ``attribute``).

        Parameters
        ----------
        inputs : Tensor or mapping
            A floating-point batch ``(B, ...)``, integer token ids ``(B, T)`` of a text model, or a tokenizer's
            output (a mapping with ``input_ids``) for a Hugging Face model.
        target : None, int, list, array or Tensor
            None: the predicted class; an int: that class for every sample; one class per sample.
        additional_forward_args : tuple, optional
            Further arguments of the forward: ``model(inputs, *additional_forward_args)``; for token ids,
            ``(lengths,)``, for a Hugging Face model ``(attention_mask,)``.
        return_convergence_delta : bool
            Also return the conservation delta per sample, ``Σ relevance (inputs, and parameters that received
            some: a class token) − relevance put on the output``
            (Captum's convergence delta).

        Returns
        -------
        Tensor, or (Tensor, Tensor) with ``return_convergence_delta``
            ``(B, ...)`` relevance like ``inputs`` (``(B, T)`` per token for token ids).
        """
        result = self.explanation(inputs, target, additional_forward_args)
        text = getattr(result, "token_relevance", None) is not None
        relevance = (result.token_relevance if text else result.relevance).detach()
        if not text and isinstance(inputs, Tensor) and relevance.dtype != inputs.dtype:
            relevance = relevance.to(inputs.dtype)
        if not return_convergence_delta:
            return relevance
        if hasattr(result, "embedding_shares"):  # (a TransformerExplanation: tokens + embedding shares)
            inner = result.explanation
            delta = result.total() + inner.parameter_relevance_sum - inner.seed.sum(1)
            return relevance, delta.detach()
        delta = result.relevance_sum + result.parameter_relevance_sum - result.seed.sum(1)
        initial = getattr(result, "initial_state_relevance", None)
        return relevance, (delta if initial is None else delta + initial).detach()

    __call__ = attribute


def quantus_explain(model: nn.Module, inputs, targets, composite: Composite | Mapping | None = None, *,
                    method: str = "lrp", **options: Any) -> np.ndarray:
    """Quantus's ``explain_func``: numpy in, numpy out (``(B, ...)`` like ``inputs``).

    Pass it as ``explain_func=seqlrp.quantus_explain`` with ``explain_func_kwargs={"composite": ...}``.
    Quantus calls ``explain_func(model=..., inputs=..., targets=..., **explain_func_kwargs)``; other keyword
    arguments Quantus adds (e.g. ``device``) are accepted: ``device`` moves the inputs.
    """
    device = options.pop("device", None)
    for key in ("channel_first", "softmax", "model_predict_kwargs"):  # (Quantus's own keyword arguments)
        options.pop(key, None)
    x = torch.as_tensor(np.asarray(inputs))
    if x.is_floating_point():
        parameter = next(model.parameters(), None)
        x = x.to(parameter.dtype if parameter is not None else torch.float32)
    if device is not None:
        x = x.to(device)
    relevance = Attribution(model, composite, method=method, **options).attribute(x, targets)
    return relevance.detach().cpu().numpy()


__all__ = ["METHODS", "Attribution", "quantus_explain"]

