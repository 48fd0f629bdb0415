"""The in-place check of the rules: ``shape`` broadcasts to exactly ``target`` (same answer as torch)."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from seqlrp.core.rules.base import _broadcasts_into

dims = st.lists(st.integers(1, 3), min_size=0, max_size=4)


@given(dims, dims)
def test_agrees_with_torch_broadcast_shapes(shape, target):
    try:
        expected = torch.broadcast_shapes(torch.Size(shape), torch.Size(target)) == torch.Size(target)
    except RuntimeError:
        expected = False
    assert _broadcasts_into(torch.Size(shape), torch.Size(target)) == expected
