"""The one propagation pipeline every entry point runs (``explain``, ``explain_text``, the baselines).

Forward the model, translate a failed forward into a message naming cause and fix, check the output,
resolve the target, put the seed on it, walk the graph for coverage, run ONE backward, warn about ops
without a rule, refuse non-finite relevance, build the :class:`~seqlrp.core.explanation.Explanation`,
release the wrapped copy. What differs between model families is only how their inputs become the
leaf the relevance is read at, and how it is read back: that is an :class:`Inputs` object (the seam).

>>> import torch, seqlrp
>>> from seqlrp.core.pipeline import TensorInputs, propagate
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
>>> propagate(model, TensorInputs(torch.randn(2, 4)), None, "one", mode="gradient").relevance.shape
torch.Size([2, 4])
"""

from __future__ import annotations

import abc
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .checks import (
    SCALE_LIMIT,
    all_finite,
    check_output,
    in_place_input,
    input_mismatch,
    magnitude_and_score,
    make_seed,
    resolve_target,
    warn_relevance_scale,
)
from .copying import release
from .coverage import Coverage, graph_coverage
from .explanation import Explanation
from .functional import FunctionalRules
from .gating import mark_gated
from .session import NoRuleError, Session
from .sinks import ParameterTaps
from .stochastic import StochasticForwardError, watch_stochastic

#: the explainer choice, one name everywhere: LRP (the session's rules), the plain gradient, gradient x input
Mode = Literal["lrp", "gradient", "gradient_x_input"]
MODES: tuple[str, ...] = ("lrp", "gradient", "gradient_x_input")

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class CoverageWarning(UserWarning):
    """Relevance passed through ops that mix values without a rule (plain-gradient route)."""


class Inputs(abc.ABC):
    """The leaf/readback seam: how a model family's inputs reach the model and how relevance comes back.

    The pipeline calls, in this order: :meth:`forward_args` (what ``model(*args)`` receives), the forward,
    :meth:`leaf` (the tensor the relevance is read at: the input itself, or a leaf the family put in place
    of an embedding lookup), :meth:`sinks` (further leaves whose relevance is reported, e.g. learned initial
    states), one backward, then :meth:`readback` (the family's result from the generic one). A family that
    feeds embeddings with an attention mask supplies ``args = (embeddings_leaf, mask)`` and ``leaf()``
    returning the embeddings; a family that looks tokens up replaces the lookup by a leaf (see
    :class:`seqlrp.lstm.text.EmbeddingLeaf`).

    Attributes
    ----------
    batch : int
        Samples in the batch (the output must have this many rows).
    shape : tuple of int
        The inputs' shape, for error messages.
    unexplained : str
        The error when the output does not depend on the leaf.
    """

    batch: int
    shape: tuple[int, ...]
    unexplained = "the model's output does not depend on its inputs: nothing to explain"

    @abc.abstractmethod
    def forward_args(self) -> tuple:
        """The positional arguments of the model's forward."""

    @abc.abstractmethod
    def leaf(self) -> Tensor:
        """The tensor relevance is read at (called after the forward)."""

    def sinks(self, session: Session | None) -> list[Tensor]:
        """Further leaves whose relevance the readback reports (default: none)."""
        return []

    def forward_failed(self, model: Callable, error: Exception) -> Exception | None:
        """The error to raise instead of ``error`` (a TypeError or RuntimeError of the forward), or None to re-raise."""
        return None

    def readback(self, result: Explanation, gradient: Tensor, sink_relevance: Sequence[Tensor | None],
                 session: Session | None, mode: str) -> Explanation:
        """The family's explanation from the generic one (``gradient``: the leaf's incoming relevance)."""
        return result


class TensorInputs(Inputs):
    """A floating-point batch that is the model's one input (images, vectors): the relevance has its shape."""

    def __init__(self, inputs: Tensor):
        self.x = inputs.detach().requires_grad_(True)
        self.batch, self.shape = inputs.shape[0], tuple(inputs.shape)

    def forward_args(self) -> tuple:
        return (self.x,)

    def leaf(self) -> Tensor:
        return self.x

    def forward_failed(self, model: Callable, error: Exception) -> Exception | None:
        if not isinstance(error, RuntimeError):
            return None
        mismatch = input_mismatch(model, self.x) if isinstance(model, nn.Module) else None
        if mismatch is not None:
            return TypeError(f"{mismatch} (the forward failed: {error})")
        return ValueError(f"the model's forward failed on inputs of shape {self.shape} and dtype {self.x.dtype} "
                          f"(check the input shape and dtype the model expects): {error}")


def propagate(model: Callable, inputs: Inputs | Tensor, target, seed, session: Session | None = None, *,
              mode: Mode = "lrp", warn_coverage: bool = True) -> Explanation:
    """Forward, seed the target output, run one backward: the pipeline of every explainer.

    Parameters
    ----------
    model : callable
        The model to run: a session's wrapped copy (LRP), or a structural copy (baselines, ``session=None``).
    inputs : Inputs or Tensor
        The seam (a tensor is taken as :class:`TensorInputs`).
    target, seed
        As in :func:`seqlrp.explain`.
    session : Session, optional
        The rules' session (None: the plain gradient).
    mode : {"lrp", "gradient", "gradient_x_input"}
        ``gradient_x_input`` multiplies the leaf's incoming relevance by the leaf; the others keep it.
    warn_coverage : bool
        Warn (:class:`CoverageWarning`) when ops mixed values without a rule.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(inputs, Tensor):
        inputs = TensorInputs(inputs)
    try:
        return _propagate(model, inputs, target, seed, session, mode, warn_coverage)
    finally:
        if session is not None:  # (the wrapped copy: no reference cycles left to the cyclic collector)
            if isinstance(model, nn.Module):
                release(model)
            session.recurrent.clear()  # (each handler holds the session)


def _propagate(model, inputs: Inputs, target, seed, session: Session | None, mode: str,
               warn_coverage: bool) -> Explanation:
    calls = session.calls if session is not None else []
    with torch.enable_grad():
        try:
            output = run_forward(model, inputs.forward_args(), session)
        except (NoRuleError, StochasticForwardError):
            raise
        except (TypeError, RuntimeError) as error:
            in_place = in_place_input(error) if isinstance(error, RuntimeError) else None
            if in_place is not None:
                raise ValueError(in_place) from error
            translated = inputs.forward_failed(model, error)
            if translated is None:
                raise
            raise translated from error
        leaf = inputs.leaf()
        check_output(output, inputs.batch, inputs.shape)
        target = resolve_target(output, target)
        seed_tensor = make_seed(output, target, seed)
        if not output.requires_grad:
            raise ValueError(inputs.unexplained)
        coverage = graph_coverage(output, (leaf,), session.assigned) if session is not None else Coverage()
        if any(call.rule.uses_gating for call in calls):
            mark_gated(output)
        sinks = inputs.sinks(session)
        parameters = session.sinks if session is not None else {}
        taps = ParameterTaps(output, parameters, inputs.batch) if parameters else None
        grad, *sink_relevance = torch.autograd.grad(output, [leaf, *sinks, *parameters.values()], seed_tensor,
                                                    allow_unused=True)
        sink_relevance, parameter_totals = sink_relevance[:len(sinks)], sink_relevance[len(sinks):]
    if grad is None:
        raise ValueError(inputs.unexplained)
    if warn_coverage:
        warn_unruled(coverage)
    gradient = grad.detach()
    relevance = (gradient * leaf.detach() if mode == "gradient_x_input" else gradient).contiguous()
    check_finite_relevance(relevance, calls, seed_tensor)
    result = Explanation(relevance, output.detach(), target, coverage, seed_tensor, calls)
    if taps is not None:
        result.parameter_relevance = taps.per_sample(parameter_totals)
    return inputs.readback(result, gradient, sink_relevance, session, mode)


def run_forward(model: Callable, args: tuple, session: Session | None):
    """``model(*args)``, under the session's rules for functional ops when there is a session; refused
    (:class:`~seqlrp.core.stochastic.StochasticForwardError`) if it draws random numbers."""
    with watch_stochastic():
        if session is None:
            return model(*args)
        with FunctionalRules(session):
            return model(*args)


def check_finite_relevance(relevance: Tensor, calls: list, seed: Tensor | None = None) -> None:
    """Never a NaN heatmap: non-finite relevance is an error naming the first layer (backward order) it came from;
    relevance far above the explained score (``seed``) warns (:func:`~.checks.warn_relevance_scale`)."""
    if seed is not None and calls and relevance.dim() and relevance.numel():
        # Σ|R| per sample is finite exactly when every |R| is (unless the sum overflowed: checked below), so the
        # finite check and the scale check share one reduction, and ONE host synchronisation reads both sums
        magnitude, score = magnitude_and_score(relevance, seed)
        values = torch.cat([magnitude, score]).tolist()
        sums, scores = values[:len(magnitude)], values[len(magnitude):]
        if all(map(math.isfinite, sums)) or bool(all_finite(relevance)):  # (or: finite values, a sum overflowed)
            if len(scores) != len(sums):  # (one of them for the whole batch: broadcast, as tensors would)
                size = max(len(sums), len(scores))
                sums = sums * size if len(sums) == 1 else sums
                scores = scores * size if len(scores) == 1 else scores
            if any(m > SCALE_LIMIT * s and s > 0 for m, s in zip(sums, scores, strict=True)):  # (Σ|R|/|score|>limit)
                warn_relevance_scale(relevance, seed, calls)
            return
    elif bool(all_finite(relevance)):
        return
    culprit = next((call for call in reversed(calls) if call.relevance_in is not None
                    and not bool(all_finite(torch.as_tensor(call.relevance_in)))), None)
    where = f" at layer {culprit.name!r} ({culprit.module_type}, rule {culprit.rule!r})" if culprit else ""
    raise ValueError(f"the relevance became NaN or infinite{where}: a rule divided by (almost) zero or the model "
                     "produced huge values; use a rule with a stabilizer (epsilon > 0) there")


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a ``warnings.warn`` in the calling function point at the first frame
    outside the seqlrp package (the user's line), however many of seqlrp's frames lie between."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def warn_unruled(coverage: Coverage, stacklevel: int | None = None) -> None:
    """A :class:`CoverageWarning` naming the graph ops that mixed values without a rule, if any."""
    if coverage.unruled:
        warnings.warn(
            "relevance took the plain-gradient route through ops without an LRP rule: "
            + ", ".join(f"{k} x{v}" for k, v in coverage.unruled.items())
            + " (e.g. a product or quotient of two signals); give them modules with rules, or see .coverage",
            CoverageWarning, stacklevel=stacklevel or user_stacklevel(),
        )
