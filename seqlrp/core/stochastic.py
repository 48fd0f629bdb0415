"""Refuse stochastic forwards: an explanation of a random function changes on every call.

Training mode is refused up front for the modules known to be random or batch-dependent in training
(:func:`seqlrp.core.checks.check_eval_mode`); everything else -- ``F.dropout(x, training=True)``,
``nn.RReLU`` or ``nn.MultiheadAttention(dropout > 0)`` called in training mode through a wrapper,
``torch.bernoulli`` / ``torch.rand`` inside a forward, also with an explicit generator -- is caught
while the explained forward runs: a dispatch mode watches every ATen op and records those PyTorch
tags ``nondeterministic_seeded`` (the random ones) unless their arguments make them deterministic
(dropout with ``p = 0`` or ``train = False``). After the forward, any recorded op raises
:class:`StochasticForwardError` naming it and the fix.

The watch costs one Python call per ATen op of the forward (244 ops on resnet50: below the timing
noise); seqlrp's own recurrent kernels run outside it (:func:`unwatched`).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch._C import _get_dispatch_stack_at as _stack_at
from torch._C import _len_torch_dispatch_stack as _len_stack
from torch._C import _pop_torch_dispatch_stack as _pop_stack
from torch._C import _push_on_torch_dispatch_stack as _push_stack
from torch.utils._python_dispatch import TorchDispatchMode

_SEEDED = torch.Tag.nondeterministic_seeded
#: arguments that make a seeded op deterministic when they take these values
_OFF = {"train": False, "training": False}
_RATES = ("p", "dropout_p")


class StochasticForwardError(RuntimeError):
    """The model drew random numbers during the explained forward."""


def _random_call(func, args: tuple, kwargs: dict) -> bool:
    if _SEEDED not in func.tags:
        return False
    values = dict(kwargs)
    arguments = func._schema.arguments
    for argument, value in zip(arguments, args, strict=False):
        values.setdefault(argument.name, value)
    for argument in arguments:  # (arguments left at their default are not passed)
        if argument.name not in values and argument.has_default_value():
            values[argument.name] = argument.default_value
    if any(values.get(name) is off for name, off in _OFF.items()):
        return False
    name = func.name()
    if "dropout" in name or "attention" in name:
        rate = next((values[r] for r in _RATES if r in values), None)
        if isinstance(rate, (int, float)) and rate == 0:
            return False
    return True


class StochasticWatch(TorchDispatchMode):
    """Counts the random ATen ops that run while it is active (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.seen: Counter[str] = Counter()

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # (explanations never run under torch.compile: no dynamo-disabling wrapper around every dispatch)
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _random_call(func, args, kwargs):
            self.seen[func.overloadpacket.__name__] += 1
        return func(*args, **kwargs)

    def check(self) -> None:
        """Raise :class:`StochasticForwardError` if a random op ran."""
        if self.seen:
            ops = ", ".join(f"{name} x{count}" for name, count in sorted(self.seen.items()))
            raise StochasticForwardError(
                f"the model's forward is random: it called {ops}, so the explanation would change on every call "
                "(dropout, RReLU or attention dropout in training mode, or random numbers drawn in forward); call "
                "model.eval() (and pass training=self.training to functional dropout) or remove the random ops"
            )


def watch_stochastic() -> _Watching:
    """Run the enclosed forward under a :class:`StochasticWatch`; raise after it if a random op ran."""
    return _Watching()


class _Watching:
    """:func:`watch_stochastic` (a class, not a generator-based context manager: one less frame per call)."""

    __slots__ = ("watch",)

    def __enter__(self) -> StochasticWatch:
        self.watch = StochasticWatch()
        return self.watch.__enter__()

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.watch.__exit__(exc_type, exc, traceback)
        if exc_type is None:
            self.watch.check()


def unwatched() -> _Unwatched:
    """Suspend the innermost watch for seqlrp's own deterministic kernels (speed); other modes stay."""
    return _Unwatched()


class _Unwatched:
    """:func:`unwatched` (a class, not a generator-based context manager: it runs once per wrapped layer call)."""

    __slots__ = ("mode",)

    # (torch's own stack calls, as ``_get_current_dispatch_mode`` / ``_pop_mode`` / ``_push_mode`` make them for a
    # mode without a dispatch key, like the watch: a few µs less per wrapped layer call)
    def __enter__(self) -> None:
        depth = _len_stack()
        top = _stack_at(depth - 1) if depth else None
        self.mode = _pop_stack(None) if isinstance(top, StochasticWatch) else None

    def __exit__(self, *exc) -> None:
        if self.mode is not None:
            _push_stack(self.mode)
            self.mode = None
