"""Rules for functional ops in a model's forward: reductions and scaling by constants.

Models often pool with ``out.mean(1)`` or ``out.sum(1) / lengths`` instead of modules. During a
session's forward a :class:`~torch.overrides.TorchFunctionMode` routes these calls through
:class:`~seqlrp.core.function.LRPFunction` with the composite's average-pooling rule (ε by default):

* ``torch.mean`` / ``Tensor.mean``, ``torch.sum`` / ``Tensor.sum`` on a tensor that carries
  relevance: a linear map with fixed non-negative weights (ε over the reduced elements);
* ``x * c``, ``c * x``, ``x / c`` where ``c`` is a constant (a number, a tensor that does not depend
  on the input, or a parameter): a diagonal linear map, ``R_in = x c / stab(x c) · R_out`` -- the
  relevance passes (and a 0/1 mask zeroes it), where the plain gradient would scale it by ``c``.

Anything else keeps its gradient and shows up in the coverage report.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .function import LayerCall, LRPFunction
from .views import PoolView

_REDUCTIONS = {torch.mean: "mean", Tensor.mean: "mean", torch.sum: "sum", Tensor.sum: "sum"}
_SCALINGS = {torch.mul: "mul", Tensor.mul: "mul", Tensor.__mul__: "mul", Tensor.__rmul__: "mul",
             torch.div: "div", Tensor.div: "div", Tensor.__truediv__: "div", torch.true_divide: "div"}
_PROBE = nn.AvgPool1d(1)


class FunctionView(PoolView):
    """A fixed linear map given as a function (a reduction or a scaling by a constant)."""

    def __init__(self, fn, label: str, nonnegative_weights: bool):
        super().__init__(None)
        self.fn, self.label, self.nonnegative_weights = fn, label, nonnegative_weights

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.fn(*inputs)

    def output_nonnegative(self, inputs_nonnegative):
        return self.nonnegative_weights and all(inputs_nonnegative)


def _carries_relevance(t: Any) -> bool:
    return isinstance(t, Tensor) and t.requires_grad and t.is_floating_point() and not isinstance(t, nn.Parameter)


def _constant(c: Any) -> bool:
    return isinstance(c, (int, float)) or (isinstance(c, Tensor) and not _carries_relevance(c))


class FunctionalRules(TorchFunctionMode):
    """Active during a session's forward: gives functional reductions and scalings their rule."""

    def __init__(self, session):
        super().__init__()
        self.session = session
        self.rule = session.composite.by_type(_PROBE)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.rule is None or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        kind = _REDUCTIONS.get(func)
        if kind is not None and args and _carries_relevance(args[0]) and "out" not in kwargs:
            rest = args[1:]
            return self._apply(lambda x: func(x, *rest, **kwargs), f"torch.{kind}", args[0], True)
        kind = _SCALINGS.get(func)
        if kind is not None and len(args) == 2 and kwargs.get("out") is None:
            a, b = args
            if _carries_relevance(a) and _constant(b):
                return self._apply(lambda x: func(x, b, **kwargs), f"torch.{kind}", a,
                                   _positive_constant(b))
            if kind == "mul" and _carries_relevance(b) and _constant(a):
                return self._apply(lambda x: func(a, x, **kwargs), f"torch.{kind}", b, _positive_constant(a))
        return func(*args, **kwargs)

    def _apply(self, fn, label: str, x: Tensor, nonnegative_weights: bool) -> Tensor:
        view = FunctionView(fn, label, nonnegative_weights)
        call = LayerCall(label, label, self.rule, view, level=self.session.options.get("record", "sums"))
        self.session.calls.append(call)
        self.session.assigned.setdefault(label, f"{label}: {self.rule!r}")
        return LRPFunction.apply(call, x)


def _positive_constant(c: Any) -> bool:
    if isinstance(c, (int, float)):
        return c >= 0
    return False  # a tensor: deciding would need its values (a host sync)
