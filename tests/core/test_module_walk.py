"""seqlrp.core.copying.named_modules / modules: torch's lists (same pairs, same order), without recursive generators."""

from __future__ import annotations

import torchvision
from torch import nn

from seqlrp.core.copying import modules, named_modules


def test_the_iterative_walk_lists_what_torch_lists():
    shared = nn.Linear(2, 2)
    odd = nn.Sequential(shared, nn.Sequential(shared, nn.ReLU(), nn.Sequential()), shared)
    odd.add_module("none", None)
    odd[1].add_module("again", odd[1])  # (a cycle back to a module already listed)
    for model in (torchvision.models.densenet121(), torchvision.models.mobilenet_v3_small(), odd, nn.ReLU()):
        assert [(n, id(m)) for n, m in model.named_modules()] == [(n, id(m)) for n, m in named_modules(model)]
        assert [id(m) for m in model.modules()] == [id(m) for m in modules(model)]
