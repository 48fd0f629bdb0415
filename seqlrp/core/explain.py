"""``explain()``: one call from a model and inputs to input relevance."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .checks import (
    check_eval_mode,
    check_inputs,
    check_output,
    in_place_input,
    input_mismatch,
    make_seed,
    resolve_target,
    warn_relevance_scale,
)
from .composites import Composite, as_composite
from .copying import release, unwrap
from .coverage import Coverage, graph_coverage
from .explanation import Explanation
from .functional import FunctionalRules
from .gating import mark_gated
from .labels import check_labels
from .session import NoRuleError, Session
from .stochastic import StochasticForwardError, watch_stochastic


class CoverageWarning(UserWarning):
    """Relevance passed through ops that mix values without a rule (plain-gradient route)."""


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
    canonical = composite.canonize(model)
    session = Session(composite.bind(canonical), record=record)
    wrapped = session.wrap(canonical, private_to=model)
    result = propagate(wrapped, inputs, target, seed, session)
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


def propagate(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    target,
    seed,
    session: Session | None = None,
    *,
    times_input: bool = False,
    warn_coverage: bool = True,
) -> Explanation:
    """Forward ``inputs``, seed the target output, run one backward; shared by explain and the baselines."""
    try:
        return _propagate(model, inputs, target, seed, session, times_input, warn_coverage)
    finally:
        if session is not None and isinstance(model, nn.Module):
            release(model)  # (the wrapped copy: no reference cycles left to the cyclic collector)


def _propagate(model, inputs, target, seed, session, times_input, warn_coverage) -> Explanation:
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        try:
            output = run_forward(model, (x,), session)
        except (NoRuleError, StochasticForwardError):
            raise
        except RuntimeError as error:
            if in_place_input(error) is not None:
                raise ValueError(in_place_input(error)) from error
            mismatch = input_mismatch(model, x) if isinstance(model, nn.Module) else None
            if mismatch is not None:
                raise TypeError(f"{mismatch} (the forward failed: {error})") from error
            raise ValueError(
                f"the model's forward failed on inputs of shape {tuple(x.shape)} and dtype {x.dtype} "
                f"(check the input shape and dtype the model expects): {error}"
            ) from error
        check_output(output, x.shape[0], tuple(x.shape))
        target = resolve_target(output, target)
        seed_tensor = make_seed(output, target, seed)
        if not output.requires_grad:
            raise ValueError("the model's output does not depend on its inputs: nothing to explain")
        coverage = graph_coverage(output, (x,), session.assigned) if session else Coverage()
        if session is not None and any(call.rule.uses_gating for call in session.calls):
            mark_gated(output)
        (grad,) = torch.autograd.grad(output, x, seed_tensor, allow_unused=True)
    if grad is None:
        raise ValueError("the model's output does not depend on its inputs: nothing to explain")
    if warn_coverage:
        warn_unruled(coverage, stacklevel=5)
    relevance = (grad * x.detach() if times_input else grad).contiguous()
    check_finite_relevance(relevance, session.calls if session else [], seed_tensor)
    return Explanation(relevance.detach(), output.detach(), target, coverage, seed_tensor,
                       session.calls if session else [])


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
    if bool(torch.isfinite(relevance).all()):
        if seed is not None and calls:
            warn_relevance_scale(relevance, seed, calls)
        return
    culprit = next((call for call in reversed(calls) if call.relevance_in is not None
                    and not bool(torch.isfinite(call.relevance_in).all())), None)
    where = f" at layer {culprit.name!r} ({culprit.module_type}, rule {culprit.rule!r})" if culprit else ""
    raise ValueError(f"the relevance became NaN or infinite{where}: a rule divided by (almost) zero or the model "
                     "produced huge values; use a rule with a stabilizer (epsilon > 0) there")


def warn_unruled(coverage: Coverage, stacklevel: int = 3) -> None:
    """A :class:`CoverageWarning` naming the graph ops that mixed values without a rule, if any."""
    if coverage.unruled:
        warnings.warn(
            "relevance took the plain-gradient route through ops without an LRP rule: "
            + ", ".join(f"{k} x{v}" for k, v in coverage.unruled.items())
            + " (e.g. a product or quotient of two signals); give them modules with rules, or see .coverage",
            CoverageWarning, stacklevel=stacklevel,
        )
