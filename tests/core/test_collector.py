"""``explain`` pauses Python's cyclic garbage collector while it runs and restores it after, also on an error."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.core.collector import collector_paused


class Recorder(nn.Module):
    """A linear layer that records whether the collector is enabled when its forward runs."""

    def __init__(self):
        super().__init__()
        self.linear, self.seen = nn.Linear(4, 3), []

    def forward(self, x):
        self.seen.append(gc.isenabled())
        return self.linear(x)


def test_the_collector_is_paused_during_explain_and_restored_after():
    model = Recorder().eval()
    assert gc.isenabled()
    result = seqlrp.explain(model, torch.randn(2, 4), 0)
    assert model.seen == [False] and gc.isenabled()
    assert torch.isfinite(result.relevance).all()


def test_the_collector_is_restored_after_an_error():
    model = Recorder().eval()
    with pytest.raises(ValueError):
        seqlrp.explain(model, torch.randn(2, 4), 7)  # (no class 7: one clear error)
    assert model.seen == [False] and gc.isenabled()


def test_a_collector_the_user_turned_off_stays_off():
    model = Recorder().eval()
    gc.disable()
    try:
        seqlrp.explain(model, torch.randn(2, 4), 0)
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
