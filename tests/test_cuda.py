"""CUDA: the rule, CNN, LSTM and reference-parity paths on a GPU (``make test-gpu`` = ``pytest -m cuda``).

Every test here is marked ``cuda`` and skipped with a reason where ``torch.cuda.is_available()`` is
False (no GPU was lent while they were written: they have not run yet, see docs/lstm.md). Each one
compares the CUDA result with the CPU result of the same float64 model, checks that the backward
makes no host synchronization (``torch.cuda.set_sync_debug_mode("error")`` while ``autograd.grad``
runs), and records what float16 / bfloat16 autocast does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.lstm import BiLSTMClassifier

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none available)")]


@pytest.fixture
def no_sync_backward(monkeypatch):
    """Make every ``torch.autograd.grad`` (the LRP backward of explain / explain_text) raise on a host sync."""
    grad = torch.autograd.grad

    def checked(*args, **kwargs):
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            return grad(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(previous)

    monkeypatch.setattr(torch.autograd, "grad", checked)


def _text_batch(vocab=50, batch=7):
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 9, (batch,), generator=gen)
    return torch.randint(0, vocab, (batch, int(lengths.max())), generator=gen), lengths


def test_rule_layers_on_cuda_equal_cpu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 5)).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    cpu = seqlrp.explain(model, x, target=1)
    gpu = seqlrp.explain(model.cuda(), x.cuda(), target=1)
    torch.testing.assert_close(gpu.relevance.cpu(), cpu.relevance, rtol=1e-9, atol=1e-12)


def test_cnn_resnet18_on_cuda_equals_cpu_without_host_syncs(no_sync_backward):
    torchvision = pytest.importorskip("torchvision")
    from seqlrp.cnn import EpsilonPlusFlat

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).double().eval()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    cpu = seqlrp.explain(model, x, target=3, composite=EpsilonPlusFlat())
    gpu = seqlrp.explain(model.cuda(), x.cuda(), target=3, composite=EpsilonPlusFlat())
    torch.testing.assert_close(gpu.relevance.cpu(), cpu.relevance, rtol=1e-7, atol=1e-10)


def test_lstm_explain_text_on_cuda_equals_cpu_without_host_syncs(no_sync_backward):
    torch.manual_seed(0)
    model = BiLSTMClassifier(50, 6, 5, 3).double().eval()
    ids, lengths = _text_batch()
    cpu = seqlrp.explain_text(model, ids, lengths=lengths, bias_factor=1.0)
    gpu = seqlrp.explain_text(model.cuda(), ids.cuda(), lengths=lengths, bias_factor=1.0)
    torch.testing.assert_close(gpu.embedding_relevance.cpu(), cpu.embedding_relevance, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gpu.direction_relevance.cpu(), cpu.direction_relevance, rtol=1e-9, atol=1e-12)


def test_reference_parity_on_cuda(reference_dir):
    from tests.lstm.test_reference_parity import batch, flat

    with np.load(reference_dir / "reference_synthetic.npz", allow_pickle=False) as data:
        ref = {k: data[k] for k in data}
    model, _ = seqlrp.lstm.load_arras(reference_dir / "synthetic_model.npz")
    model = model.cuda()
    ids, lengths = batch(ref)
    for k in range(len(ref["config_eps"])):
        eps, bf = float(ref["config_eps"][k]), float(ref["config_bias_factor"][k])
        for c in range(ref["scores"].shape[1]):
            result = seqlrp.explain_text(model, ids.cuda(), target=c, lengths=lengths, epsilon=eps, bias_factor=bf)
            ours = flat(result.token_relevance.cpu(), ref)
            np.testing.assert_allclose(ours, ref["R_words"][k, c], rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_autocast_error_vs_float32_is_bounded_or_a_clear_error(dtype):
    """Under autocast the fused LSTM runs in the autocast dtype where the ops autocast; the relevance must
    either stay close to float32's (relative L1 error < 5%) or fail with an error naming the problem."""
    torch.manual_seed(0)
    model = BiLSTMClassifier(50, 16, 16, 3).cuda().eval()
    ids, lengths = _text_batch()
    ids = ids.cuda()
    reference = seqlrp.explain_text(model, ids, target=0, lengths=lengths).token_relevance
    try:
        with torch.autocast("cuda", dtype=dtype):
            low = seqlrp.explain_text(model, ids, target=0, lengths=lengths).token_relevance
    except (RuntimeError, TypeError, ValueError) as error:
        assert str(error), "autocast failed without a message"
        pytest.xfail(f"{dtype} autocast raises: {error}")
    error = (low.float() - reference).abs().sum() / reference.abs().sum()
    print(f"{dtype}: relative L1 error of the token relevance vs float32 = {float(error):.2e}")
    assert torch.isfinite(low).all()
    assert float(error) < 5e-2
