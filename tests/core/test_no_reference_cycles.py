"""An explanation leaves no reference cycles: its garbage is freed by reference counting at once.

Cycles (a wrapped layer's forward closing over its module) left ~2,000 objects per explanation to Python's
cyclic collector, whose full collections then cost ~170 ms every few explanations (mobilenet_v3_large).
"""

from __future__ import annotations

import gc
from collections import Counter

import pytest
import torch
import torchvision
from torch import nn

import seqlrp
from seqlrp.cnn import EpsilonGammaBox, EpsilonPlusFlat
from seqlrp.lstm import AttentionRNNClassifier


def cyclic_garbage(run) -> Counter:
    """Types of the objects that only the cyclic collector frees, from one call of ``run``."""
    run()  # (warm: first-call caches)
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        found = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
    return found


@pytest.mark.parametrize("composite", [EpsilonPlusFlat(), EpsilonGammaBox(-3.0, 3.0)], ids=["EPF", "EGB"])
def test_cnn_explanations_leave_no_cycles(composite):
    model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    x = torch.rand(2, 3, 32, 32)
    assert cyclic_garbage(lambda: seqlrp.explain(model, x, 1, composite)) == Counter()
    res = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 2)).eval()
    assert cyclic_garbage(lambda: seqlrp.baselines.guided_backprop(res, x, 1)) == Counter()


@pytest.mark.parametrize("fused", [True, False])
def test_text_explanations_leave_no_cycles(fused):
    torch.manual_seed(0)
    model = AttentionRNNClassifier(30, 8, 6, 3, bidirectional=True).eval()
    ids = torch.randint(1, 30, (3, 7))
    lengths = torch.tensor([7, 5, 2])
    assert cyclic_garbage(lambda: seqlrp.explain_text(model, ids, lengths=lengths, fused=fused)) == Counter()
