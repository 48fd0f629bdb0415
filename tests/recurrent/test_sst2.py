"""--quick run of the SST-2 token-deletion comparison for a recurrent family (xLSTM)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
SST2 = ROOT.parent / "shared" / "data" / "sst2"


@pytest.mark.slow  # (~30 s alone, 2 minutes on a loaded machine)
@pytest.mark.skipif(not (SST2 / "train.tsv").exists(), reason="needs ../shared/data/sst2")
def test_sst2_recurrent_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("sst2_recurrent", ROOT / "nlp_examples" / "sst2_recurrent.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sst2_recurrent"] = module
    spec.loader.exec_module(module)
    result = module.main(["--quick", "--data", str(SST2), "--out", str(tmp_path)])
    assert 0.0 <= result["accuracy"] <= 1.0
    assert set(result["rows"]) == {"remove", "<unk>"}
    for rows in result["rows"].values():
        names = {row["explainer"] for row in rows}
        assert names == {"LRP (signal-takes-all)", "LRP (half rule)", "gradient x input", "sensitivity (gradient²)",
                         "random"}
        assert all(math.isfinite(row["aopc"]) and row["ci_low"] <= row["aopc"] <= row["ci_high"] for row in rows)
