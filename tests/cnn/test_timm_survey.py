"""One timm model per CNN family is canonized and explained (``make test-slow``; the table in docs/cnn.md).

Each model runs in its own process (``benchmarks/timm_models.py``): float64, random batch-norm statistics, the
canonized model's logits within 1e-9 of the model's, no op without a rule, every layer conserving relevance
under the ε composite with bias_factor = 1.
"""

from __future__ import annotations

import pytest

pytest.importorskip("timm")

from benchmarks.models import check_isolated  # noqa: E402
from benchmarks.timm_models import FAMILIES  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES.values()))
def test_every_timm_family_is_explained(name):
    row = check_isolated(name, threads=2, survey="timm_models")
    assert row["status"] == "explained", row
    assert row["equivalence"] <= 1e-9
    assert not row["unruled"]
    assert row["layer conservation"] <= 1e-6, row
