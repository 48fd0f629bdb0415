"""``explain()``: one call from a model and inputs to input relevance."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn

from .checks import check_eval_mode, check_inputs
from .collector import collector_paused
from .composites import Composite, as_composite
from .copying import unwrap
from .explanation import Explanation
from .labels import check_labels
from .pipeline import CoverageWarning, TensorInputs, propagate
from .session import Session

__all__ = ["CoverageWarning", "explain", "prepare"]


def explain(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | Callable | None = None,
    composite: Composite | Mapping | None = None,
    *,
    seed: str | Callable = "logit",
    record: str = "sums",
    labels: Sequence[str] | None = None,
) -> Explanation:
    """Layer-wise relevance of ``inputs`` for the ``target`` outputs of ``model``.

    Parameters
    ----------
    model : nn.Module
        In eval mode. Never modified: rules are attached to a structural copy sharing its parameters.
    inputs : Tensor
        Floating-point batch ``(B, ...)``.
    target : None, int, Tensor or callable
        Class to explain: ``None`` = predicted class, an int for all samples, a ``(B,)`` tensor,
        or ``callable(output) -> (B,)``.
    composite : Composite or mapping, optional
        Module -> rule (default :class:`EpsilonEverywhere`).
    seed : {"logit", "one"} or callable
        Relevance at the output: the target logit (default), 1, or ``callable(output, target)``.
    record : {"sums", "full", "none"}
        What each layer records for :meth:`Explanation.conservation`: relevance in and out per sample
        (default), also ``sum |R_out|`` (the scale for judging rounding), or nothing (fastest).
    labels : sequence of str, optional
        Class names, one per output class (a wrong count is a ValueError); kept as ``.labels`` for reports
        and the notebook view.

    Returns
    -------
    Explanation
        ``.relevance`` (shape of ``inputs``), ``.output``, ``.target``, ``.coverage``,
        ``.conservation()``.

    Notes
    -----
    Python's cyclic garbage collector is paused while the call runs and restored after, also on an error
    (:mod:`seqlrp.core.collector`): the copies the call builds are freed by reference counting.

    Examples
    --------
    >>> import torch, seqlrp
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    >>> result = seqlrp.explain(model, torch.randn(2, 4), composite=seqlrp.EpsilonEverywhere(epsilon=0.01))
    >>> result.relevance.shape
    torch.Size([2, 4])
    """
    model = prepare(model, inputs)
    if record not in ("sums", "full", "none"):
        raise ValueError(f"record must be 'sums', 'full' or 'none', got {record!r}")
    composite = as_composite(composite)
    with collector_paused():  # (the copies below die by reference counting: seqlrp.core.collector)
        canonical = composite.canonize(model)
        session = Session(composite.bind(canonical), record=record)
        wrapped = session.wrap(canonical, private_to=model)
        result = propagate(wrapped, TensorInputs(inputs), target, seed, session)
    result.labels = check_labels(labels, result.output.shape[1])
    return result


def prepare(model: nn.Module, inputs: Tensor) -> nn.Module:
    """The model an explainer runs: wrappers removed, eval mode and the inputs checked (nothing copied yet)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = unwrap(model)
    check_eval_mode(model)
    check_inputs(inputs)
    return model
