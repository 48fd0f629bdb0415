"""Structural copies: new module objects that share the user's parameters and buffers.

The user's model is never mutated: rules are attached to a copy whose module objects are new
(so replacing a ``forward`` or a child there touches nothing of the user's), while parameter and
buffer tensors are the same objects (no memory, no drift).
"""

from __future__ import annotations

import copy

from torch import nn


def shallow_copy(module: nn.Module) -> nn.Module:
    """A new module object with fresh containers (parameters, buffers, children, hooks), same contents."""
    new = copy.copy(module)
    for key, value in list(vars(new).items()):
        # fresh containers: _parameters, _buffers, _modules and every hook dict
        if key.startswith("_") and isinstance(value, dict):
            new.__dict__[key] = copy.copy(value)
    return new


def structural_copy(module: nn.Module, memo: dict[int, nn.Module] | None = None) -> nn.Module:
    """Copy the module tree; share parameter and buffer tensors; keep reused modules reused."""
    memo = {} if memo is None else memo
    if id(module) in memo:
        return memo[id(module)]
    new = shallow_copy(module)
    memo[id(module)] = new
    new._modules = {name: None if child is None else structural_copy(child, memo)
                    for name, child in module._modules.items()}
    return new


def record_outputs(model: nn.Module, select=lambda name, module: True, value=lambda inputs, output: output) -> dict:
    """Register forward hooks on ``model`` (a copy!) storing ``value(inputs, output)`` per qualified name.

    The first call of a module is kept (reused modules); the hooks never replace outputs.
    """
    store: dict = {}

    def hook_for(name: str):
        def hook(module, inputs, output):
            if name not in store:
                store[name] = value(inputs, output)

        return hook

    for name, module in model.named_modules():
        if select(name, module):
            module.register_forward_hook(hook_for(name))
    return store
