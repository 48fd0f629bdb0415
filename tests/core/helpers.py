"""Test helpers: snapshots that prove a model was not mutated."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

_PLAIN = (int, float, str, bool, tuple, type(None))


def snapshot(model: nn.Module):
    """State bitwise, module identities, hooks, forward attributes, every module's plain attributes and
    training flag, parameters' identity / requires_grad / dtype / device / grad."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    modules = [(name, id(m)) for name, m in model.named_modules()]
    hooks = [(name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
              len(getattr(m, "_backward_pre_hooks", {})), "forward" in m.__dict__) for name, m in model.named_modules()]
    params = [(name, id(p), p.requires_grad, p.dtype, p.device, p.grad) for name, p in model.named_parameters()]
    attributes = [(name, m.training, sorted(m.__dict__),
                   {k: v for k, v in m.__dict__.items() if isinstance(v, _PLAIN)}) for name, m in model.named_modules()]
    return state, modules, hooks, params, attributes


def assert_unchanged(model: nn.Module, before) -> None:
    state, modules, hooks, params, attributes = before
    now_state, now_modules, now_hooks, now_params, now_attributes = snapshot(model)
    assert state.keys() == now_state.keys()
    for key in state:
        assert torch.equal(state[key], now_state[key]), f"{key} changed"
        assert state[key].dtype == now_state[key].dtype and state[key].device == now_state[key].device
    assert modules == now_modules
    assert hooks == now_hooks
    assert [p[:5] for p in params] == [p[:5] for p in now_params]
    assert all(p[5] is None for p in now_params), "explain must not accumulate .grad"
    assert attributes == now_attributes


@contextmanager
def untouched(*models: nn.Module):
    """Assert on exit, also after an exception inside, that ``models`` are exactly as they were."""
    before = [snapshot(m) for m in models]
    try:
        yield
    finally:
        for model, snap in zip(models, before, strict=True):
            assert_unchanged(model, snap)


def assert_conserved(row, rel: float = 1e-12) -> None:
    """Relevance in == out for one conservation row, up to rounding relative to sum |R_out|."""
    bound = rel * row.magnitude + 1e-12
    assert bool(((row.relevance_in - row.relevance_out).abs() <= bound).all()), (
        f"{row.name}: in {row.relevance_in.tolist()} out {row.relevance_out.tolist()} scale {row.magnitude.tolist()}")
