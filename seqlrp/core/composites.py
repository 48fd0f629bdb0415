"""Composites: which rule goes to which module.

A composite is a plain mapping, read in order, first match wins:

* a module type or a tuple of types (the groups below) -> rule;
* a glob over qualified module names (``"features.0"``, ``"layer4.*"``) -> rule; name patterns
  take precedence over types;
* the key :data:`FIRST` -> the rule of the first affine layer the input meets (e.g. zB).

Rules are instances, registered names or ``(name, params)``.

>>> from torch import nn
>>> import seqlrp
>>> composite = seqlrp.Composite({
...     seqlrp.FIRST: ("zbox", {"low": -1.0, "high": 1.0}),
...     seqlrp.groups.CONVOLUTIONS: ("gamma", {"gamma": 0.25}),
...     nn.Linear: ("epsilon", {"epsilon": 0.25}),
...     seqlrp.groups.ACTIVATIONS: "pass",
... })
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
from collections.abc import Iterator, Mapping
from typing import Any

from torch import nn

from . import groups
from .copying import named_modules
from .ops import Contraction, Product, Sum
from .registry import resolve
from .rules.base import Rule

#: special keys are strings in angle brackets (never module names)
FIRST = "<first layer>"

RuleLike = Any  # Rule | str | tuple[str, dict]


class Composite(Mapping):
    """An ordered ``key -> rule`` mapping (see the module docstring for the keys).

    A strict composite (the default) raises for an affine/pooling layer it has no rule for.
    """

    strict = True

    def __init__(self, rules: Mapping | None = None):
        self._rules: dict[Any, Rule] = {}
        for key, rule in (rules or {}).items():
            if not (key == FIRST or isinstance(key, (str, type, tuple))):
                raise TypeError(f"composite keys are types, tuples of types, name globs or FIRST; got {key!r}")
            self._rules[key] = resolve(rule)

    def __getitem__(self, key):
        return self._rules[key]

    def __iter__(self) -> Iterator:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        def key_name(k):
            if isinstance(k, type):
                return k.__name__
            if isinstance(k, tuple):
                return "(" + ", ".join(t.__name__ for t in k) + ")"
            return repr(k)

        body = ", ".join(f"{key_name(k)}: {v!r}" for k, v in self._rules.items())
        return f"{type(self).__name__}({{{body}}})"

    @property
    def first(self) -> Rule | None:
        return self._rules.get(FIRST)

    def by_name(self, name: str) -> Rule | None:
        for key, rule in self._rules.items():
            if isinstance(key, str) and not key.startswith("<") and fnmatch.fnmatchcase(name, key):
                return rule
        return None

    def by_type(self, module: nn.Module) -> Rule | None:
        """The rule of ``module``'s type (:meth:`by_class` of ``type(module)``)."""
        return self.by_class(type(module))

    def by_class(self, cls: type) -> Rule | None:
        """The first rule whose type key ``cls`` is a subclass of (no instance needed), or None."""
        for key, rule in self._rules.items():
            if isinstance(key, (type, tuple)) and issubclass(cls, key):
                return rule
        return None

    def canonize(self, model: nn.Module) -> nn.Module:
        """Hook for composites that need a canonized model (the CNN presets); identity here."""
        return model

    def bind(self, model: nn.Module) -> Composite:
        """Hook for composites whose rules depend on the model (e.g. a γ schedule by depth); self here."""
        return self


def check_names(composite: Mapping, model: nn.Module, root: str | None = None,
                original: nn.Module | None = None) -> None:
    """Refuse a name key of ``composite`` that matches no module of ``model`` (a typo would be ignored silently).

    A key matches a qualified module name as a glob (``"features.*"``), the model itself by ``root`` (its class
    name), or a part of a module that seqlrp explains in parts (``"attn.v_proj"`` of an ``nn.MultiheadAttention``
    named ``attn``: any ``"<module>.<part>"``). The error names the key and the closest module names; a key that
    names a module of ``original`` (the user's model) that canonization replaced says so.
    """
    keys = [key for key in composite if isinstance(key, str) and not key.startswith("<")]
    if not keys:
        return
    names = [name for name, _ in named_modules(model) if name]
    names.append(root or type(model).__name__)
    for key in keys:
        if any(fnmatch.fnmatchcase(name, key) for name in names):
            continue
        owner, _, part = key.rpartition(".")
        if owner in names and part and not any(c in part for c in "*?["):  # a part of a module (virtual name)
            continue
        if original is not None and any(fnmatch.fnmatchcase(name, key) for name, _ in original.named_modules()):
            raise ValueError(f"composite key {key!r} names module(s) of your model that canonization replaced (e.g. "
                             "a batch norm fused into its convolution), so its rule would not apply; give the rule to "
                             "the layer it was fused into, or use seqlrp.cnn.canonize(model) and name its modules")
        closest = difflib.get_close_matches(key, names, n=3, cutoff=0.5) or names[:3]
        raise ValueError(f"composite key {key!r} matches no module of {names[-1]}; closest module names: "
                         + ", ".join(repr(name) for name in closest)
                         + " (keys are qualified names from model.named_modules(), globs allowed)")


def as_composite(composite: Composite | Mapping | None) -> Composite:
    if composite is None:
        return _default()
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, Mapping):
        return Composite(composite)
    raise TypeError(f"composite must be a Composite or a mapping of module types/names to rules, got {composite!r}")


@functools.cache
def _default() -> Composite:
    """The default composite, built once (composites are read-only: sharing one across calls is what users do)."""
    return EpsilonEverywhere()


def layer_rules(linear: Any, *, product: Any = "signal_takes_all", contraction: Any = None,
                activations: Any = "pass") -> dict:
    """The rules most presets share: ``linear`` on affine layers, average pools, normalizations, sums and (unless
    ``contraction`` is given) gate-weighted contractions; ``product`` on gated products; winner-takes-all on max
    pools; ``activations`` on element-wise activations. A preset adds or overrides its own keys."""
    return {
        groups.WEIGHTED: linear,
        groups.AVG_POOLS: linear,
        groups.NORMS: linear,
        Sum: linear,
        Contraction: linear if contraction is None else contraction,
        Product: product,
        groups.MAX_POOLS: "winner_takes_all",
        groups.ACTIVATIONS: activations,
    }


class ZeroEverywhere(Composite):
    """LRP-0 on every affine layer, average pool, sum, contraction and normalization; winner-takes-all on
    max pools, signal-takes-all on gated products, pass on activations."""

    def __init__(self):
        super().__init__(layer_rules("zero"))


class EpsilonEverywhere(Composite):
    """LRP-ε on every affine layer, average pool, sum (residual adds), gate-weighted contraction (attention)
    and normalization (LayerNorm: its scale held constant); winner-takes-all on max pools, signal-takes-all
    on gated products (squeeze-excitation), pass on activations.

    Parameters
    ----------
    epsilon : float
        The ε of every layer (default 1e-6).
    bias_factor : float
        Arras's bias share (0: absorb bias and ε; 1: conserve exactly).
    """

    def __init__(self, epsilon: float = 1e-6, bias_factor: float = 0.0):
        eps = ("epsilon", {"epsilon": epsilon, "bias_factor": bias_factor})
        super().__init__(layer_rules(eps))
