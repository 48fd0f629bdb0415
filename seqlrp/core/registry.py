"""The one rule registry shared by the CNN and the LSTM sides.

>>> import seqlrp
>>> rule = seqlrp.rules.get("epsilon", epsilon=0.25)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from .rules.base import Rule

_REGISTRY: dict[str, type[Rule]] = {}
_builtins_registered = False

R = TypeVar("R", bound=type)


def register(name: str) -> Callable[[R], R]:
    """Class decorator: make a rule class available as ``seqlrp.rules.get(name)``."""

    def decorate(cls: R) -> R:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a rule named {name!r} is already registered ({_REGISTRY[name].__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def ensure_builtins() -> None:
    """Register the built-in rules, views and handlers (:func:`seqlrp.builtins.register_builtins`) on first use.

    Called by every registry lookup and by each :class:`~seqlrp.core.session.Session`, so that ``import seqlrp``
    stays lazy (``seqlrp --version`` imports no torch) and a direct ``from seqlrp.core import explain`` finds
    the built-ins too; the registrations themselves are listed in one place, :mod:`seqlrp.builtins`.
    """
    global _builtins_registered
    if not _builtins_registered:
        _builtins_registered = True
        from .. import builtins  # (at call time: builtins imports the rule, view and handler modules)

        builtins.register_builtins()


def get(name: str, **params: Any) -> Rule:
    """Instantiate the rule registered under ``name`` with ``params``."""
    ensure_builtins()
    try:
        cls = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"no rule named {name!r}; available rules: {', '.join(available())}") from None
    accepted = _parameters(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"rule {name!r} has no parameter {', '.join(map(repr, unknown))}; its parameters: "
                        f"{', '.join(accepted) or 'none'}")
    return cls(**params)


@functools.cache
def _parameters(cls: type) -> list[str]:
    """The keyword parameters of a rule class (``inspect.signature`` once per class: it was a quarter of an
    explanation's fixed cost)."""
    return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]


def available_class(name: str) -> type[Rule] | None:
    """The rule class registered under ``name``, or None."""
    ensure_builtins()
    return _REGISTRY.get(name)


def available() -> list[str]:
    """Names of all registered rules, sorted."""
    ensure_builtins()
    return sorted(_REGISTRY)


def resolve(rule: Rule | str | tuple[str, dict[str, Any]]) -> Rule:
    """Accept a rule instance, a registered name, or ``(name, params)``."""
    from .rules.base import Rule

    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str):
        return get(rule)
    if isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], str):
        return get(rule[0], **rule[1])
    raise TypeError(f"expected a Rule, a registered rule name or (name, params); got {rule!r}")
