from __future__ import annotations

from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "lstm"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference numbers of Arras et al.'s LSTM-LRP (skips where ../shared is absent)."""
    if not (REFERENCE / "reference_synthetic.npz").exists():
        pytest.skip(f"reference data not found at {REFERENCE} (../shared is absent in a user's fresh clone)")
    return REFERENCE
