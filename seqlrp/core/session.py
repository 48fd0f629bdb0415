"""A session attaches a composite's rules to a structural copy of the model and records what ran."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .composites import Composite, check_names
from .copying import is_private_copy, named_modules, structural_copy
from .function import LayerCall, LRPFunction
from .registry import ensure_builtins
from .rules.base import Rule
from .views import DETERMINISTIC, ROUTING, View, view_of

#: handlers for module types that need more than one LRPFunction (e.g. nn.LSTM): module class ->
#: ``handler(session, name, module) -> forward`` returning the replacement forward, or None (the built-in
#: ones are registered in :mod:`seqlrp.builtins`)
_HANDLERS: dict[type, Callable] = {}


def register_handler(*types: type) -> Callable:
    """Decorator for ``handler(session, name, module) -> forward | None`` on modules of ``types`` and their
    subclasses (the most specific registered class in a module's MRO wins)."""

    def decorate(handler: Callable) -> Callable:
        for cls in types:
            _HANDLERS[cls] = handler
        return handler

    return decorate


def handler_of(module: nn.Module) -> Callable | None:
    """The handler registered for ``module``'s class or its nearest base, or None."""
    ensure_builtins()
    for cls in type(module).__mro__:
        handler = _HANDLERS.get(cls)
        if handler is not None:
            return handler
    return None


class NoRuleError(TypeError):
    """A module that mixes values has no rule in the composite."""


class Session:
    """One explanation run: the composite, the wrapped copy, and the record of layer calls."""

    def __init__(self, composite: Composite, **options: Any):
        ensure_builtins()
        self.composite = composite
        #: free-form switches for handlers (e.g. ``fused=False`` for the unrolled LSTM path)
        self.options = options
        #: handlers of recurrent layers that ran (their relevance taps)
        self.recurrent: list = []
        self.calls: list[LayerCall] = []
        self.assigned: dict[str, str] = {}
        #: parameters of the wrapped copy that no rule consumes (a class token, a learned position embedding):
        #: qualified name -> the copy's twin, which requires grad so that relevance reaching it is reported
        #: (``Explanation.parameter_relevance``); filled by :meth:`wrap` for strict composites
        self.sinks: dict[str, nn.Parameter] = {}
        self._first_taken = False
        self._resolved: dict[tuple, Rule] = {}
        self._reprs: dict[int, str] = {}  # id of a rule of the composite (alive while the session is) -> its repr
        if getattr(composite, "preset", None):  # a named preset (AttnLRP, CP-LRP): named in the coverage report
            self.assigned["<composite>"] = repr(composite)

    # wrapping -------------------------------------------------------------------------------
    def wrap(self, model: nn.Module, private_to: nn.Module | None = None) -> nn.Module:
        """A structural copy of ``model`` whose layers run through their rules.

        The copy's parameters are detached twins (same storage, ``requires_grad=False``): in its forward
        only tensors that depend on the explained input require grad, which is how functional ops tell
        signals from constants (a weight ``W.T`` is a constant).

        ``private_to``: the user's model, when ``model`` is a copy made from it (a canonized model). If no
        module object of ``model`` belongs to the user's, ``model`` itself is wrapped (one copy less);
        otherwise it is copied as always.
        """
        private = private_to is not None and is_private_copy(model, private_to)
        copy = model if private else structural_copy(model)
        check_names(self.composite, copy, original=private_to)  # (a typo in a name key would be ignored silently)
        for name, module in named_modules(copy):
            _detach_parameters(module)
            self._wrap_module(name or type(model).__name__, module)
        if self.composite.strict:
            self._collect_sinks(copy)
        return copy

    def _collect_sinks(self, copy: nn.Module) -> None:
        """The copy's parameters that its forward uses directly (no view or handler consumes them): they
        become leaves that require grad, so relevance routed into them (``torch.cat`` with a class token) is
        reported instead of silently dropped. Tensors computed from them alone stay constants for the rules."""
        for prefix, module in named_modules(copy):
            if "forward" in module.__dict__ or isinstance(module, ROUTING):
                continue  # (a rule or handler consumes its parameters; a lookup table is no summand)
            params = module.__dict__["_parameters"]
            for key, p in params.items():
                if p is not None and p.is_floating_point() and not _uninitialized(p):
                    params[key] = twin = nn.Parameter(p.detach(), requires_grad=True)
                    self.sinks[f"{prefix}.{key}" if prefix else key] = twin

    def _wrap_module(self, name: str, module: nn.Module) -> None:
        handler = handler_of(module) if self.composite.strict else None  # (baselines keep the gradient)
        if handler is not None:
            forward = handler(self, name, module)
            if forward is not None:
                module.__dict__["forward"] = forward
            return
        if next(module.children(), None) is not None:
            return  # containers: their leaves are wrapped
        view = view_of(module)
        if view is not None and not self.composite.strict and self.composite.by_name(name) is None \
                and self.composite.by_type(module) is None:
            return  # a non-strict composite leaves unmatched layers to the plain gradient
        if view is not None:
            module.__dict__["forward"] = self._layer_forward(name, module, view)
        elif isinstance(module, ROUTING) or not self.composite.strict:
            return  # (a non-strict composite, e.g. guided backprop, leaves other layers to the gradient)
        elif next(module.parameters(recurse=False), None) is not None:
            module.__dict__["forward"] = self._refuse(name, module)

    def rule_for(self, name: str, module: nn.Module, view: View | None = None, first_eligible: bool = True):
        """The rule of ``module`` at call time: name pattern > first layer > type (resolved once per module, but
        for the call that takes the first-layer rule)."""
        first = first_eligible and view is not None and view.kind == "linear" and not self._first_taken
        key = (name, id(module), None if view is None else view.kind)
        if not first and key in self._resolved:
            return self._resolved[key]
        rule = self.composite.by_name(name)
        if first:
            self._first_taken = True
            if rule is None and self.composite.first is not None:
                rule = self.composite.first
        if rule is None:
            rule = self.composite.by_type(module)
        if rule is None:
            raise NoRuleError(
                f"module {name!r} ({type(module).__name__}) has no rule in the composite {self.composite!r}; "
                f"add one, e.g. {{{type(module).__name__}: 'epsilon'}} or {{'{name}': 'epsilon'}}"
            )
        if view is not None and not rule.applies_to(view):
            raise NoRuleError(
                f"rule {rule!r} does not apply to module {name!r} ({type(module).__name__}, a {view.kind} layer); "
                f"rules for {view.kind} layers: "
                + ", ".join(_rules_for_kind(view.kind))
            )
        text = self._reprs.get(id(rule))  # (a rule's repr once per session, not once per layer call)
        if text is None:
            text = self._reprs[id(rule)] = repr(rule)
        self.assigned[name] = f"{type(module).__name__}: {text}"
        if not first:
            self._resolved[key] = rule
        return rule

    def _layer_forward(self, name: str, module: nn.Module, view: View) -> Callable:
        level, quiet = self.options.get("record", "sums"), type(module) in DETERMINISTIC

        def forward(*inputs: Tensor, **kwargs: Any) -> Tensor:
            if kwargs:
                raise TypeError(f"module {name!r} was called with keyword arguments {sorted(kwargs)}; "
                                "wrapped layers take positional tensors only")
            call = LayerCall(name, type(module).__name__, self.rule_for(name, module, view), view,
                             level=level, quiet=quiet)
            self.calls.append(call)
            # (seqlrp's own node: no functional rule applies to it, so the torch-function mode need not see the
            # property reads before the layer's forward disables it itself)
            with torch._C.DisableTorchFunction():
                return LRPFunction.apply(call, *inputs)

        return forward

    @staticmethod
    def _refuse(name: str, module: nn.Module) -> Callable:
        def forward(*args: Any, **kwargs: Any):
            hint = ""
            if "Norm" in type(module).__name__:
                hint = " Normalization layers must be fused first: use seqlrp.cnn.canonize(model)."
            raise NoRuleError(
                f"module {name!r} ({type(module).__name__}) has parameters but no LRP rule can apply to its type."
                f"{hint} Otherwise register a view for it (seqlrp.core.views.register_view)."
            )

        return forward


def _detach_parameters(module: nn.Module) -> None:
    """Replace a COPY's parameters by detached twins sharing their storage (never called on user modules)."""
    params = module.__dict__["_parameters"]
    for key, p in params.items():
        if p is not None and p.requires_grad and not _uninitialized(p):
            params[key] = nn.Parameter(p.detach(), requires_grad=False)


def _rules_for_kind(kind: str) -> list[str]:
    from .registry import _REGISTRY

    return sorted(n for n, cls in _REGISTRY.items() if kind in cls.kinds)


def _uninitialized(p: Tensor) -> bool:
    """A lazy module's parameter before its first call (``Parameter``'s ``isinstance`` runs a Python
    ``__instancecheck__``: an exact ``Parameter`` or plain tensor is answered by its type)."""
    return type(p) not in (nn.Parameter, Tensor) and isinstance(p, nn.parameter.UninitializedParameter)
