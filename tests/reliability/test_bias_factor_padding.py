"""bias_factor=1 on padded batches: no bias or ε share lands on padding, so a sentence is explained alone as in
its batch (issue 25, item 3)."""

from __future__ import annotations

import pytest
import torch

import seqlrp
from seqlrp.lstm.classifiers import AttentionRNNClassifier


class ProductPooled(AttentionRNNClassifier):
    """Attention pooling written as ``(a[..., None] * h).sum(1)`` (a gated product, then a sum over time)."""

    def forward(self, token_ids, lengths=None):
        h, mask = self.encode(token_ids, lengths)
        scores = self.score(torch.tanh(self.attention(h)))[..., 0].masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return self.classifier((weights.unsqueeze(-1) * h).sum(1))


class MaskedMean(AttentionRNNClassifier):
    """Length-aware mean pooling: ``(h * mask).sum(1) / mask.sum(1)``."""

    def forward(self, token_ids, lengths=None):
        h, mask = self.encode(token_ids, lengths)
        return self.classifier((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))


IDS = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 0, 0], [3, 5, 0, 0, 0, 0]])
LENGTHS = torch.tensor([6, 3, 2])


@pytest.mark.parametrize("cls", [ProductPooled, MaskedMean, AttentionRNNClassifier])
@pytest.mark.parametrize("rnn", ["lstm", "gru"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unrolled"])
@pytest.mark.parametrize("bias_factor", [0.0, 1.0])
def test_sentence_alone_equals_the_sentence_in_a_padded_batch(cls, rnn, fused, bias_factor):
    torch.manual_seed(0)
    model = cls(12, 5, 4, 3, rnn=rnn).double().eval()
    batch = seqlrp.explain_text(model, IDS, 0, lengths=LENGTHS, bias_factor=bias_factor, fused=fused)
    for row, length in enumerate(LENGTHS.tolist()):
        alone = seqlrp.explain_text(model, IDS[row:row + 1, :length], 0, bias_factor=bias_factor, fused=fused)
        torch.testing.assert_close(batch.token_relevance[row, :length], alone.token_relevance[0], rtol=1e-12,
                                   atol=1e-12)
        torch.testing.assert_close(batch.initial_state_relevance[row], alone.initial_state_relevance[0], rtol=1e-12,
                                   atol=1e-12)
        assert bool((batch.token_relevance[row, length:] == 0).all())  # no share on padding


@pytest.mark.parametrize("cls", [ProductPooled, MaskedMean, AttentionRNNClassifier])
def test_bias_factor_one_still_conserves_in_a_padded_batch(cls):
    torch.manual_seed(1)
    model = cls(12, 5, 4, 3).double().eval()
    result = seqlrp.explain_text(model, IDS, 0, lengths=LENGTHS, epsilon=1e-2, bias_factor=1.0)
    total = result.token_relevance.sum(1) + result.initial_state_relevance
    torch.testing.assert_close(total, result.output[:, 0], rtol=1e-10, atol=1e-12)


def test_pooling_share_goes_to_the_nonzero_inputs_only():
    """A slow reference: sum over time with bias_factor=1, ε share per output unit split over the non-zero
    summands (all of them where every summand is 0)."""
    torch.manual_seed(2)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    x[0, 3:] = 0  # padding
    x[1, :, 1] = 0  # a unit whose every summand is 0
    relevance_out = torch.randn(2, 3, dtype=torch.float64)
    eps = 0.1

    class Pool(torch.nn.Module):
        def forward(self, x):
            return x.sum(1)

    result = seqlrp.explain(Pool(), x, target=0, composite=seqlrp.EpsilonEverywhere(eps, bias_factor=1.0),
                            seed=lambda out, target: relevance_out)
    z = x.sum(1)
    s = relevance_out / (z + eps * ((z >= 0).double() * 2 - 1))
    expected = torch.zeros_like(x)
    for b in range(2):
        for k in range(3):
            nonzero = [t for t in range(5) if x[b, t, k] != 0]
            spread = nonzero or list(range(5))
            for t in range(5):
                expected[b, t, k] = x[b, t, k] * s[b, k]
                if t in spread:
                    expected[b, t, k] += eps * (1.0 if z[b, k] >= 0 else -1.0) * s[b, k] / len(spread)
    torch.testing.assert_close(result.relevance, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(result.relevance.sum((1, 2)), relevance_out.sum(1), rtol=1e-12, atol=1e-14)


class SelfAttention(torch.nn.Module):
    """``F.scaled_dot_product_attention`` with a key padding mask, mean over the valid positions, Linear."""

    def __init__(self):
        super().__init__()
        self.qk, self.v, self.out = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)

    def forward(self, x):
        valid = x.abs().sum(-1) != 0  # (rows of zeros are padding)
        q = self.qk(x)
        mask = valid[:, None, :].expand(-1, x.shape[1], -1)
        a = torch.nn.functional.scaled_dot_product_attention(q, q, self.v(x), attn_mask=mask) * valid[..., None]
        return self.out(a.sum(1) / valid.sum(1, keepdim=True))


def test_gated_contractions_share_epsilon_and_conserve():
    torch.manual_seed(3)
    model = SelfAttention().double().eval()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    x[1, 3:] = 0
    result = seqlrp.explain(model, x, target=0, composite=seqlrp.EpsilonEverywhere(0.05, bias_factor=1.0))
    assert result.coverage.complete, result.coverage
    torch.testing.assert_close(result.relevance_sum, result.output[:, 0], rtol=1e-10, atol=1e-12)
    assert bool((result.relevance[1, 3:] == 0).all())
    alone = seqlrp.explain(model, x[1:, :3], target=0, composite=seqlrp.EpsilonEverywhere(0.05, bias_factor=1.0))
    torch.testing.assert_close(result.relevance[1, :3], alone.relevance[0], rtol=1e-12, atol=1e-12)
