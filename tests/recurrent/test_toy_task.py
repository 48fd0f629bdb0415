"""--quick run of the recurrent families' toy task: every family trains, is explained, and the table is written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


def test_toy_task_recurrent_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("toy_task_recurrent", ROOT / "nlp_examples" / "toy_task_recurrent.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_task_recurrent"] = module
    spec.loader.exec_module(module)
    results = module.main(["--quick", "--out", str(tmp_path)])
    assert set(results) == {"lstm", "mamba", "mamba2", "recurrent_gemma", "rwkv", "xlstm"}
    for family, result in results.items():
        assert 0.0 <= result["accuracy"] <= 1.0
        methods = set(result["top2"])
        assert {"gradient x input", "gradient", "random"} <= methods
        assert any(name.startswith("LRP") for name in methods), family
        assert all(0.0 <= v <= 1.0 for v in result["top2"].values())
    assert set(results["mamba"]["top2"]) >= {"LRP (half rule)", "LRP (signal-takes-all)"}
    table = (tmp_path / "table.md").read_text()
    assert all(f"| {family} |" in table for family in results)
