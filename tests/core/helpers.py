"""Test helpers: snapshots that prove a model was not mutated."""

from __future__ import annotations

import torch
from torch import nn


def snapshot(model: nn.Module):
    """State bitwise, module identities, hooks and forward attributes."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    modules = [(name, id(m)) for name, m in model.named_modules()]
    hooks = [(name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
              len(getattr(m, "_backward_pre_hooks", {})), "forward" in m.__dict__) for name, m in model.named_modules()]
    params = [(name, id(p), p.requires_grad, p.grad) for name, p in model.named_parameters()]
    return state, modules, hooks, params, model.training


def assert_unchanged(model: nn.Module, before) -> None:
    state, modules, hooks, params, training = before
    now_state, now_modules, now_hooks, now_params, now_training = snapshot(model)
    assert state.keys() == now_state.keys()
    for key in state:
        assert torch.equal(state[key], now_state[key]), f"{key} changed"
        assert state[key].dtype == now_state[key].dtype
    assert modules == now_modules
    assert hooks == now_hooks
    assert [(n, i, r) for n, i, r, _ in params] == [(n, i, r) for n, i, r, _ in now_params]
    assert all(g is None for *_, g in now_params), "explain must not accumulate .grad"
    assert training == now_training


def assert_conserved(row, rel: float = 1e-12) -> None:
    """Relevance in == out for one conservation row, up to rounding relative to sum |R_out|."""
    bound = rel * row.magnitude + 1e-12
    assert bool(((row.relevance_in - row.relevance_out).abs() <= bound).all()), (
        f"{row.name}: in {row.relevance_in.tolist()} out {row.relevance_out.tolist()} scale {row.magnitude.tolist()}")
