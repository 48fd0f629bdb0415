"""The per-layer record of the backward (seqlrp.core.function.LayerCall.record)."""

from __future__ import annotations

import pytest
import torch

from seqlrp.core.function import LayerCall, _per_sample_sum
from seqlrp.core.ops import per_sample_total
from seqlrp.core.rules import Epsilon


def _call(level: str) -> LayerCall:
    return LayerCall("layer", "Linear", Epsilon(), view=None, level=level)


@pytest.mark.parametrize("make", [
    lambda: torch.randn(3, 5, 4, 6, dtype=torch.float64),
    lambda: torch.randn(3, 4, 6, 5, dtype=torch.float64).permute(0, 3, 1, 2),  # channels last: no copy, same sums
    lambda: torch.randn(5, 3, 7, dtype=torch.float64).transpose(0, 1),
    lambda: torch.randn(3, 8, dtype=torch.float64)[:, ::2],
])
def test_record_sums_every_layout_per_sample(make):
    r_out, r_in = make(), make()
    call = _call("full")
    call.record(r_out, (r_in, None))
    flat = lambda t: t.contiguous().reshape(t.shape[0], -1)  # noqa: E731 (the independent reference)
    torch.testing.assert_close(call.relevance_out, flat(r_out).sum(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(call.relevance_in, flat(r_in).sum(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(call.magnitude, flat(r_out).abs().sum(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(per_sample_total(r_in).reshape(-1), flat(r_in).sum(1), rtol=1e-12, atol=1e-12)
    assert per_sample_total(r_in).shape == (r_in.shape[0],) + (1,) * (r_in.dim() - 1)


def test_record_of_one_value_per_sample_is_a_copy_not_an_alias():
    r = torch.tensor([1.0, -2.0, 3.0])
    call = _call("full")
    call.record(r, (r,))
    r.mul_(10)  # a later in-place op on the relevance must not change what was recorded
    assert call.relevance_out.tolist() == [1.0, -2.0, 3.0] and call.relevance_in.tolist() == [1.0, -2.0, 3.0]
    assert call.magnitude.tolist() == [1.0, 2.0, 3.0]
    assert per_sample_total(r).data_ptr() != r.data_ptr()


def test_cached_sum_is_recomputed_after_an_in_place_change():
    r = torch.ones(2, 3)
    assert _per_sample_sum(r).tolist() == [3.0, 3.0]
    r.mul_(2)
    assert _per_sample_sum(r).tolist() == [6.0, 6.0]
