"""Rule base class and the helpers every linear-layer rule shares."""

from __future__ import annotations

import abc
import math
import numbers
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..reprs import summary
from ..stabilize import safe_divide, sign0, stabilize
from ..views import LinearView, View


class Rule(abc.ABC):
    """An LRP rule: maps the relevance of a layer's output to the relevance of its inputs.

    Subclasses implement :meth:`relevance`. ``kinds`` names the view kinds the rule applies to
    (``"linear"``, ``"pool"``, ``"route"``, ``"elementwise"``, ``"sum"``, ``"product"``, ...).

    Parameters
    ----------
    epsilon : float
        Stabilizer: denominators become :math:`z + \\varepsilon\\,\\mathrm{sign}(z)`.
    ignore_bias : bool
        Leave the bias out of the denominator (and out of any bias share).
    """

    name: ClassVar[str] = "rule"
    kinds: ClassVar[frozenset[str]] = frozenset()
    default_epsilon: ClassVar[float] = 1e-6
    default_ignore_bias: ClassVar[bool] = False

    #: the rule can use ``gated=True``: the output relevance is zero wherever the output is <= 0
    uses_gating: ClassVar[bool] = False
    #: an elementwise rule that passes relevance where the unit is active (pass, active_pass)
    passes_on_active: ClassVar[bool] = False

    @property
    def zero_for_zero_input(self) -> bool:
        """Whether the input relevance is exactly 0 wherever the input is 0 (:math:`R_j = a_j c_j`)."""
        return False

    def __init__(self, epsilon: float | None = None, ignore_bias: bool | None = None):
        self.epsilon = self._number("epsilon", self.default_epsilon if epsilon is None else epsilon, minimum=0.0)
        if ignore_bias is not None and ignore_bias not in (True, False):
            raise TypeError(f"rule {self.name!r}: ignore_bias must be True or False, got {ignore_bias!r}")
        self.ignore_bias = self.default_ignore_bias if ignore_bias is None else bool(ignore_bias)

    def _number(self, parameter: str, value: Any, minimum: float | None = None, maximum: float | None = None) -> float:
        """``value`` as a finite float in ``[minimum, maximum]``, or an error naming the rule and the parameter."""
        return check_number(f"rule {self.name!r}", parameter, value, minimum, maximum)

    def params(self) -> dict[str, Any]:
        """The rule's parameters (for reports and ``repr``)."""
        return {"epsilon": self.epsilon, "ignore_bias": self.ignore_bias}

    def __repr__(self) -> str:
        # (tensor parameters, e.g. zB bounds per pixel, as shape and range: the values are in params()). Kept with
        # the parameters it was made from (a tensor by identity and version) in _REPRS: every session names its
        # rules, so an unchanged rule is not summarized again
        params = self.params()
        key = (self.name, *((k, _repr_key(v)) for k, v in params.items()))
        try:
            cached = _REPRS.get(self)
        except TypeError:  # (a user's rule that is not hashable or weakly referable: made afresh)
            cached = key = None
        if cached is not None and cached[0] == key:
            return cached[1]
        args = ", ".join(f"{k}={summary(v)}" for k, v in params.items())
        text = f"{self.name}({args})"
        if key is not None and all(part[1] is not _UNCACHED for part in key[1:]):
            _REPRS[self] = (key, text)
        return text

    def applies_to(self, view: View) -> bool:
        return view.kind in self.kinds

    @abc.abstractmethod
    def relevance(self, view: View, inputs: Sequence[Tensor], out: Tensor, relevance: Tensor,
                  nonnegative: tuple[bool, ...] = ()) -> tuple:
        """Relevance of each input given the output ``out`` and its relevance.

        ``nonnegative[i]`` is True where input ``i`` is known (from the graph, without looking at
        its values) to be >= 0; rules may use it to skip work. Rules with ``uses_gating = True`` also
        take ``gated=True`` when the output relevance is provably 0 wherever the output is <= 0
        (see :mod:`seqlrp.core.gating`).
        """

    # helpers for rules on affine layers -------------------------------------------------------
    def _bias(self, view: LinearView) -> Tensor | None:
        return None if self.ignore_bias else view.bias

    @staticmethod
    def _shift(weight: Tensor, value: float, bias: Tensor | None = None) -> Tensor:
        """Per-output-unit shift ``value (+ bias)`` for the bias slot of a modified forward."""
        if bias is not None:
            return bias + value
        return torch.full((weight.shape[0],), value, dtype=weight.dtype, device=weight.device)

    def _z_without_bias(self, view: LinearView, out: Tensor) -> Tensor:
        """The forward's pre-activation minus the bias: ``f(x; W)`` without recomputing it."""
        if view.bias is None:
            return out
        return out - view.bias_term(view.bias, out)

    def _divide(self, relevance: Tensor, z: Tensor) -> Tensor:
        """``relevance / stab(z)``; with ε > 0 the stabilized denominator is never 0 (plain division)."""
        if self.epsilon > 0:
            return self._divide_stabilized(relevance, stabilize(z, self.epsilon))
        return safe_divide(relevance, z)

    def _divide_signed(self, relevance: Tensor, z: Tensor, sign: Tensor | float) -> Tensor:
        """``relevance / (z + ε·sign)`` when ``sign`` (±1, +1 at 0) is already known: one pass, not four."""
        return self._divide_stabilized(relevance, z + self.epsilon * sign if self.epsilon > 0 else z)

    def _divide_stabilized(self, relevance: Tensor, denominator: Tensor) -> Tensor:
        """``relevance / denominator`` for a denominator that already carries the ε shift (never 0 when ε > 0).

        The denominator must be a temporary of the rule: with ε > 0 the quotient is written into it.
        """
        if self.epsilon > 0:
            return torch.div(relevance, denominator, out=denominator) if _writable(denominator, relevance) \
                else relevance / denominator
        return safe_divide(relevance, denominator)


_UNCACHED = object()
#: rule -> (the key of its parameters, its repr): beside the rule, not in its ``__dict__`` (which describes the rule,
#: e.g. in a dataset run's identity); dropped with the rule
_REPRS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _repr_key(value: Any) -> Any:
    """What a parameter's repr depends on, comparable with ``==``: a number, string or flag itself, a tensor as
    (the tensor itself, compared by identity, and its version), a sequence of those as a tuple; anything else
    ``_UNCACHED`` (the repr is made afresh)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor):
        return _Identity(value), value._version
    if isinstance(value, (tuple, list)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return tuple(value)
    return _UNCACHED


class _Identity:
    """A reference compared by identity (a tensor's ``==`` compares values)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.value is self.value

    __hash__ = None


def check_number(owner: str, parameter: str, value: Any, minimum: float | None = None,
                 maximum: float | None = None) -> float:
    """``value`` as a finite float within the bounds; a TypeError / ValueError naming ``owner`` and ``parameter``.

    NaN or infinite rule parameters would make every relevance value NaN: they are refused here.
    """
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {parameter} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {parameter} must be finite, got {value}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{owner}: {parameter} must be {bounds}, got {value}")
    return value


def _writable(target: Tensor, other: Tensor) -> bool:
    """Whether ``op(other, target)`` may be written into ``target`` (same shape, dtype, no autograd)."""
    return (_broadcasts_into(other.shape, target.shape) and target.dtype == other.dtype
            and not target.requires_grad and target.is_contiguous())


def _broadcasts_into(shape: torch.Size, target: torch.Size) -> bool:
    """Whether ``shape`` broadcasts to exactly ``target`` (``torch.broadcast_shapes`` runs ~70 µs of Python)."""
    if shape == target:
        return True
    if len(shape) > len(target):
        return False
    return all(a == b or a == 1 for a, b in zip(reversed(shape), reversed(target), strict=False))


__all__ = ["Rule", "check_number", "safe_divide", "sign0", "stabilize"]
