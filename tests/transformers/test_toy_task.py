"""--quick run of the toy task with a tiny BERT / Llama trained from scratch: it learns, and AttnLRP / CP-LRP (no
CoverageWarning: the example raises on one) put the two marked tokens on top far more often than random relevance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_toy_task_transformer_quick(tmp_path, arch):
    spec = importlib.util.spec_from_file_location("toy_task_transformer",
                                                  ROOT / "nlp_examples" / "toy_task_transformer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_task_transformer"] = module
    spec.loader.exec_module(module)
    result = module.main(["--quick", "--arch", arch, "--out", str(tmp_path)])
    assert result["accuracy"] > 0.7  # balanced-ish classes; the quick models: BERT 0.84, Llama 0.96
    top2 = result["top2"]
    rollout = {"attention rollout"} if arch == "bert" else set()  # (from [CLS]: not for a last-token head)
    assert set(top2) == {"AttnLRP", "CP-LRP", "gradient x input", "gradient (L2)", "random"} | rollout
    assert all(0.0 <= v <= 1.0 for v in top2.values())
    # random finds both marked tokens in ~3% of the sequences; a broken explanation is no better
    assert top2["AttnLRP"] > top2["random"] + 0.1 and top2["CP-LRP"] > top2["random"] + 0.1
    assert result["coverage_complete"]
    shares = result["runs"][0]["attnlrp_shares"]
    assert shares["tokens"] > 0.5 and abs(sum(shares.values()) - 1) < 1e-6
    assert len(shares) == (3 if arch == "bert" else 1)  # Llama: rotary positions, no position or token-type table
    assert (tmp_path / "results.json").exists() and "| seed 0 |" in (tmp_path / "table.md").read_text()


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_embedding_gradient_reads_the_real_tokens(arch):
    """The gradient baselines differentiate the logit the model really outputs: the padding after [SEP] gets no
    gradient (a last-token head run on ``inputs_embeds`` would read the last column, padding included)."""
    import torch

    spec = importlib.util.spec_from_file_location("toy_task_transformer",
                                                  ROOT / "nlp_examples" / "toy_task_transformer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_task_transformer"] = module
    spec.loader.exec_module(module)
    toy, sst2 = module._load("toy_task"), module._load("sst2_transformer")
    torch.manual_seed(0)
    ids, lengths, labels, _ = toy.make_data(8, torch.Generator().manual_seed(0))
    core = sst2.CoreModel(module.build(toy.VOCAB + 2, toy.PAD, arch=arch).eval(), toy.VOCAB, toy.VOCAB + 1, toy.PAD)
    x, grad = module.embedding_gradient(core, ids, lengths, labels)
    assert x.shape == grad.shape == (8, ids.shape[1] + 2, 32)
    after_sep = torch.arange(ids.shape[1] + 2)[None, :] > (lengths + 1)[:, None]
    assert after_sep.any() and grad.norm(dim=-1)[after_sep].max() == 0
    assert grad.norm(dim=-1)[~after_sep].min() > 0
    with torch.no_grad():
        assert torch.equal(core.model(**core.batch(ids, lengths)).logits, core(ids, lengths))
