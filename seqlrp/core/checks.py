"""Input, model and target checks: every failure names its cause and its fix."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm,
                   nn.modules.instancenorm._InstanceNorm)


def check_eval_mode(model: nn.Module) -> None:
    """Refuse a model in training mode whose output depends on the mode.

    Dropout is random and batch normalization uses the batch's statistics in training mode, so an
    explanation would describe a different (and, for dropout, random) function than the one used
    for prediction. An error, not a warning: the result would be silently wrong.
    """
    for name, module in model.named_modules():
        if not module.training:
            continue
        dependent = isinstance(module, _MODE_DEPENDENT) or (
            isinstance(module, nn.RNNBase) and module.dropout > 0 and module.num_layers > 1)
        if dependent:
            raise RuntimeError(
                f"the model is in training mode and {name or 'the model'!r} ({type(module).__name__}) behaves "
                "differently in training (random dropout / batch statistics), so the explanation would describe "
                "another function; call model.eval() before explaining"
            )


def check_inputs(inputs: Tensor, what: str = "inputs") -> None:
    if not isinstance(inputs, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {inputs.dtype}; "
                        "convert with .float() (for token ids use seqlrp.explain_text)")
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(f"{what} must have a non-empty batch dimension, got shape {tuple(inputs.shape)}")
    finite = torch.isfinite(inputs)
    if not bool(finite.all()):
        nan = int(torch.isnan(inputs).sum())
        inf = int((~finite).sum()) - nan
        raise ValueError(f"{what} contain {nan} NaN and {inf} infinite values; relevance is undefined for "
                         "non-finite inputs: clean or impute them first")


def check_output(output: Tensor, batch: int) -> None:
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor of logits (B, C); got {type(output).__name__} "
                        "(wrap the model to select the logits)")
    if output.dim() != 2 or output.shape[0] != batch:
        raise ValueError(f"the model must return logits of shape (B, C) = ({batch}, C); got {tuple(output.shape)}")
    if not bool(torch.isfinite(output).all()):
        raise ValueError("the model's output contains NaN or Inf; relevance would be NaN")


def resolve_target(output: Tensor, target: int | Tensor | Callable | None) -> Tensor:
    """Target class per sample: predicted class (None), an int, a (B,) tensor, or a callable on the output."""
    batch, classes = output.shape
    if target is None:
        return output.detach().argmax(1)
    if callable(target) and not isinstance(target, Tensor):
        target = target(output.detach())
    if isinstance(target, bool):
        raise TypeError("target must be an int, a (B,) tensor of ints, a callable or None; got a bool")
    if isinstance(target, int):
        target = torch.full((batch,), target, dtype=torch.long, device=output.device)
    target = torch.as_tensor(target, device=output.device)
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"target must hold class indices (integers), got dtype {target.dtype}")
    if target.dim() == 0:
        target = target.expand(batch)
    if target.shape != (batch,):
        raise ValueError(f"target must have shape ({batch},) for a batch of {batch}, got {tuple(target.shape)}")
    low, high = int(target.min()), int(target.max())
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise ValueError(f"target {bad} is out of range for an output with {classes} classes (valid: 0..{classes - 1})")
    return target.long()


def make_seed(output: Tensor, target: Tensor, seed: str | Callable) -> Tensor:
    """The relevance put on the output: ``"logit"`` (the target score), ``"one"``, or a callable."""
    onehot = torch.zeros_like(output).scatter_(1, target[:, None], 1.0)
    if callable(seed):
        result = seed(output.detach(), target)
        if result.shape != output.shape:
            raise ValueError(f"a seed callable must return the output's shape {tuple(output.shape)}")
        return result
    if seed == "logit":
        return onehot * output.detach()
    if seed == "one":
        return onehot
    raise ValueError(f"seed must be 'logit', 'one' or a callable (output, target) -> tensor; got {seed!r}")
