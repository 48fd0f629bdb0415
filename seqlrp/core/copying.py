"""Structural copies: new module objects that share the user's parameters and buffers.

The user's model is never mutated: rules are attached to a copy whose module objects are new
(so replacing a ``forward`` or a child there touches nothing of the user's), while parameter and
buffer tensors are the same objects (no memory, no drift).
"""

from __future__ import annotations

import copy

from torch import nn


def structural_copy(module: nn.Module, memo: dict[int, nn.Module] | None = None) -> nn.Module:
    """Copy the module tree; share parameter and buffer tensors; keep reused modules reused."""
    memo = {} if memo is None else memo
    if id(module) in memo:
        return memo[id(module)]
    new = copy.copy(module)
    memo[id(module)] = new
    for key, value in list(vars(new).items()):
        # fresh containers: _parameters, _buffers, _modules and every hook dict
        if key.startswith("_") and isinstance(value, dict):
            new.__dict__[key] = copy.copy(value)
    new._modules = {name: None if child is None else structural_copy(child, memo)
                    for name, child in module._modules.items()}
    return new
