from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REFERENCE = SHARED / "reference" / "lstm"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "reference_synthetic.npz").exists():
        pytest.skip(f"reference data not found at {REFERENCE} (../shared is absent in a user's fresh clone)")
    return REFERENCE
