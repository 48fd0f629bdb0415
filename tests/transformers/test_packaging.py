"""``import seqlrp`` needs no transformers; a call that needs them names the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import seqlrp


def test_import_seqlrp_does_not_import_transformers():
    code = ("import sys, seqlrp, seqlrp.transformers; seqlrp.transformers.AttnLRP(); "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_explain_transformer_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # (import transformers now raises ImportError)
    with pytest.raises(ImportError, match=r"pip install 'seqlrp\[hf\]'"):
        seqlrp.transformers.explain_transformer(torch.nn.Linear(2, 2), {"input_ids": torch.zeros(1, 2)})
