"""The fused LSTM's fast paths give the same numbers as the plain ones (issue 14).

* the TorchScript'ed per-step loops == the same loops run as Python (float64, 1e-12);
* an unsorted batch (file order) == the same sentences explained one by one, and == the unrolled path;
* padded (no lengths) input on the packed layout == the unrolled path, for every rule configuration.
"""

from __future__ import annotations

import pytest
import torch

import seqlrp
from seqlrp.lstm import BiLSTMClassifier, fused

from .models import LastStateClassifier


def _batch(seed=0, batch=9, vocab=40):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 12, (batch,), generator=gen)  # unsorted, with ties and length 1
    ids = torch.randint(0, vocab, (batch, int(lengths.max())), generator=gen)
    return ids, lengths


@pytest.mark.parametrize("bias_factor", [0.0, 1.0])
def test_scripted_loops_equal_python_loops(monkeypatch, bias_factor):
    torch.manual_seed(0)
    model = BiLSTMClassifier(40, 6, 5, 3).double().eval()
    ids, lengths = _batch()
    scripted = seqlrp.explain_text(model, ids, lengths=lengths, bias_factor=bias_factor)
    assert isinstance(fused._steps("forward"), torch.jit.ScriptFunction)  # (the pinned torch scripts them)
    monkeypatch.setattr(fused, "USE_TORCHSCRIPT", False)
    plain = seqlrp.explain_text(model, ids, lengths=lengths, bias_factor=bias_factor)
    torch.testing.assert_close(scripted.embedding_relevance, plain.embedding_relevance, rtol=0, atol=1e-12)
    torch.testing.assert_close(scripted.direction_relevance, plain.direction_relevance, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(layers=1), dict(layers=2), dict(layers=2, bidirectional=False, bias=False)])
@pytest.mark.parametrize("bias_factor", [0.0, 1.0])
def test_unsorted_batch_equals_one_by_one_and_unrolled(kw, bias_factor):
    torch.manual_seed(1)
    model = LastStateClassifier("lstm", vocab=40, **kw).double().eval()
    ids, lengths = _batch(seed=2)
    result = seqlrp.explain_text(model, ids, target=1, lengths=lengths, bias_factor=bias_factor)
    unrolled = seqlrp.explain_text(model, ids, target=1, lengths=lengths, bias_factor=bias_factor, fused=False)
    torch.testing.assert_close(result.embedding_relevance, unrolled.embedding_relevance, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.initial_state_relevance, unrolled.initial_state_relevance, rtol=0, atol=1e-12)
    for row in range(ids.shape[0]):
        n = int(lengths[row])
        alone = seqlrp.explain_text(model, ids[row:row + 1, :n], target=1, lengths=lengths[row:row + 1],
                                    bias_factor=bias_factor)
        torch.testing.assert_close(result.token_relevance[row, :n], alone.token_relevance[0], rtol=0, atol=1e-10)
        assert bool((result.token_relevance[row, n:] == 0).all())


@pytest.mark.parametrize("bias_factor", [0.0, 1.0])
@pytest.mark.parametrize("epsilon", [1e-3, 0.0])
def test_padded_input_equals_unrolled(bias_factor, epsilon):
    torch.manual_seed(3)
    model = LastStateClassifier("lstm", vocab=40, layers=2).double().eval()
    ids = torch.randint(1, 40, (4, 6))
    kwargs = dict(target=0, epsilon=epsilon, bias_factor=bias_factor)
    fast = seqlrp.explain_text(model, ids, **kwargs)
    slow = seqlrp.explain_text(model, ids, fused=False, **kwargs)
    torch.testing.assert_close(fast.embedding_relevance, slow.embedding_relevance, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fast.direction_relevance, slow.direction_relevance, rtol=1e-9, atol=1e-12)
