"""The LRP-aware LSTM/GRU: forward equivalence, fused == unrolled, conservation, derivable limits."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqlrp
from seqlrp.core.session import Session
from seqlrp.lstm.text import text_composite

from .models import make


def lrp_copy(module, **options):
    session = Session(text_composite(None, 1e-3, 0.0), **options)
    return session.wrap(module)


CONFIGS = [
    dict(num_layers=1, bidirectional=False, batch_first=True, bias=True),
    dict(num_layers=2, bidirectional=True, batch_first=False, bias=True),
    dict(num_layers=3, bidirectional=True, batch_first=True, bias=False),
    dict(num_layers=2, bidirectional=False, batch_first=False, bias=False),
]


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("fused", [True, False])
def test_forward_equals_torch(cls, config, fused):
    torch.manual_seed(1)
    rnn = cls(4, 5, **config).double().eval()
    ours = lrp_copy(rnn, fused=fused)
    shape = (3, 7, 4) if config["batch_first"] else (7, 3, 4)
    x = torch.randn(*shape, dtype=torch.float64)
    directions = 2 if config["bidirectional"] else 1
    h0 = torch.randn(config["num_layers"] * directions, 3, 5, dtype=torch.float64)
    c0 = torch.randn_like(h0)
    for hx in (None, (h0, c0) if cls is nn.LSTM else h0):
        expected = rnn(x, hx)
        got = ours(x, hx)
        torch.testing.assert_close(got[0], expected[0], rtol=0, atol=1e-12)
        for a, b in zip(got[1] if cls is nn.LSTM else [got[1]], expected[1] if cls is nn.LSTM else [expected[1]],
                        strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_packed_and_unbatched_forward_equal_torch(cls):
    torch.manual_seed(2)
    rnn = cls(4, 5, num_layers=2, bidirectional=True, batch_first=True).double().eval()
    ours = lrp_copy(rnn)
    x = torch.randn(4, 6, 4, dtype=torch.float64)
    lengths = torch.tensor([3, 6, 1, 4])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected, got = rnn(packed), ours(packed)
    torch.testing.assert_close(got[0].data, expected[0].data, rtol=0, atol=1e-12)
    assert torch.equal(got[0].batch_sizes, expected[0].batch_sizes)
    torch.testing.assert_close(got[1][0] if cls is nn.LSTM else got[1],
                               expected[1][0] if cls is nn.LSTM else expected[1], rtol=0, atol=1e-12)
    single = torch.randn(6, 4, dtype=torch.float64)
    torch.testing.assert_close(ours(single)[0], rnn(single)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind,kw", [("lstm", dict(layers=2)), ("lstm", dict(layers=1, bidirectional=False)),
                                     ("gru", dict(layers=2)), ("gru", dict(layers=1, bidirectional=False))])
@pytest.mark.parametrize("use_lengths", [True, False])
def test_conservation_with_bias_factor_one(kind, kw, use_lengths):
    model = make(kind, **kw)
    ids = torch.randint(1, 30, (5, 9))
    lengths = torch.tensor([9, 4, 1, 7, 2]) if use_lengths else None
    result = seqlrp.explain_text(model, ids, lengths=lengths, epsilon=0.01, bias_factor=1.0)
    score = result.output.gather(1, result.target[:, None])[:, 0]
    torch.testing.assert_close(result.token_relevance.sum(1) + result.initial_state_relevance, score,
                               rtol=1e-9, atol=1e-9)
    for row in result.conservation():
        torch.testing.assert_close(row.relevance_in, row.relevance_out, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bias_free_epsilon_zero_conserves_without_bias_factor(kind):
    """Without biases and with ε = 0 every rule in the cell conserves: tokens alone sum to the score."""
    model = make(kind, layers=2, bias=False)
    ids = torch.randint(0, 30, (4, 6))
    result = seqlrp.explain_text(model, ids, epsilon=0.0, bias_factor=0.0)
    score = result.output.gather(1, result.target[:, None])[:, 0]
    torch.testing.assert_close(result.token_relevance.sum(1), score, rtol=1e-9, atol=1e-9)
    assert torch.equal(result.initial_state_relevance, torch.zeros(4, dtype=torch.float64))


def test_single_step_lstm_is_lrp0_of_the_candidate_map():
    """T=1, zero initial state, no bias, ε=0: R(h) -> c -> g -> z_g, so R_x = LRP-0 of z_g = W_g x."""
    torch.manual_seed(3)
    lstm = nn.LSTM(4, 3, bias=False).double().eval()
    x = torch.randn(1, 2, 4, dtype=torch.float64)
    relevance_h = torch.randn(2, 3, dtype=torch.float64)
    copy = lrp_copy(lstm)
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        # ε = 0 everywhere for this check
        session = Session(text_composite(None, 0.0, 0.0))
        out, (h_n, _) = session.wrap(lstm)(xg)
        (r_x,) = torch.autograd.grad(h_n[0], xg, relevance_h)
    w_g = lstm.weight_ih_l0[6:9]
    z = x[0] @ w_g.T
    expected = x[0] * ((relevance_h / z) @ w_g)
    torch.testing.assert_close(r_x[0], expected, rtol=1e-12, atol=1e-12)
    assert copy is not lstm


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("fused", [True, False])
def test_alone_equals_inside_padded_batch(kind, fused):
    model = make(kind, layers=2)
    ids = torch.randint(1, 30, (6, 11))
    lengths = torch.tensor([11, 3, 7, 1, 11, 5])
    batch = seqlrp.explain_text(model, ids, target=1, lengths=lengths, bias_factor=1.0, fused=fused)
    for n in range(6):
        length = int(lengths[n])
        alone = seqlrp.explain_text(model, ids[n:n + 1, :length], target=1, bias_factor=1.0, fused=fused)
        torch.testing.assert_close(batch.embedding_relevance[n, :length], alone.embedding_relevance[0],
                                   rtol=1e-10, atol=1e-10)
        padding = batch.embedding_relevance[n, length:]
        assert torch.equal(padding, torch.zeros_like(padding))


def test_fused_equals_unrolled_multilayer():
    model = make("lstm", layers=3)
    ids = torch.randint(0, 30, (4, 8))
    lengths = torch.tensor([8, 2, 5, 8])
    a = seqlrp.explain_text(model, ids, lengths=lengths, epsilon=0.05, bias_factor=0.5)
    b = seqlrp.explain_text(model, ids, lengths=lengths, epsilon=0.05, bias_factor=0.5, fused=False)
    torch.testing.assert_close(a.embedding_relevance, b.embedding_relevance, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.initial_state_relevance, b.initial_state_relevance, rtol=1e-12, atol=1e-12)


def test_other_linear_rule_in_cells_runs_unrolled():
    model = make("lstm")
    ids = torch.randint(0, 30, (2, 5))
    result = seqlrp.explain_text(model, ids, rules={seqlrp.lstm.GATE_LINEAR: "zplus"})
    assert "linear zplus" in result.coverage.rules["rnn"] and "[unrolled]" in result.coverage.rules["rnn"]
    assert torch.isfinite(result.token_relevance).all()


def test_time_step_one_zero_embedding_row_batch_sizes():
    model = make("lstm")
    with torch.no_grad():
        model.embedding.weight[0] = 0
    one = seqlrp.explain_text(model, torch.tensor([[5]]))
    assert one.token_relevance.shape == (1, 1) and torch.isfinite(one.token_relevance).all()
    ids = torch.randint(1, 30, (64, 7))
    ids[:, 3] = 0  # an all-zero embedding vector carries exactly no relevance with bias_factor 0
    big = seqlrp.explain_text(model, ids, bias_factor=0.0)
    assert big.token_relevance.shape == (64, 7)
    assert torch.equal(big.token_relevance[:, 3], torch.zeros(64, dtype=torch.float64))
    shared = seqlrp.explain_text(model, ids, bias_factor=1.0)  # with bias_factor 1 it gets its share
    assert bool((shared.token_relevance[:, 3] != 0).all())


def test_max_pooling_over_time_and_packed_output_models():
    for model, args in ((make("pooled", pool="max"), ()),
                        (make("packed_output"), (torch.tensor([4, 2, 6]),))):
        ids = torch.randint(0, 30, (3, 6))
        kwargs = {"lengths": args[0]} if args else {}
        result = seqlrp.explain_text(model, ids, bias_factor=1.0, **kwargs)
        assert result.coverage.complete, result.coverage
        score = result.output.gather(1, result.target[:, None])[:, 0]
        torch.testing.assert_close(result.token_relevance.sum(1) + result.initial_state_relevance, score,
                                   rtol=1e-9, atol=1e-9)


class ModulePooled(nn.Module):
    """The same as models.PooledClassifier(pool='mean') but pooling with an nn.AdaptiveAvgPool1d module."""

    def __init__(self, functional):
        super().__init__()
        self.embedding, self.lstm, self.out = functional.embedding, functional.lstm, functional.out
        self.pool = nn.AdaptiveAvgPool1d(1)

    def forward(self, ids):
        out, _ = self.lstm(self.embedding(ids))
        return self.out(self.pool(out.transpose(1, 2))[..., 0])


class LengthMeanPooled(nn.Module):
    """Mean over the true length: packed LSTM, (out * mask).sum(1) / lengths."""

    def __init__(self, functional):
        super().__init__()
        self.embedding, self.lstm, self.out = functional.embedding, functional.lstm, functional.out

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=ids.shape[1])
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).to(out.dtype)[..., None]
        return self.out((out * mask).sum(1) / lengths[:, None].to(out.dtype))


def test_functional_mean_pooling_gets_epsilon_like_the_module():
    functional = make("pooled", pool="mean")
    ids = torch.randint(0, 30, (3, 6))
    a = seqlrp.explain_text(functional, ids, target=0, epsilon=0.01, bias_factor=1.0)
    b = seqlrp.explain_text(ModulePooled(functional).eval(), ids, target=0, epsilon=0.01, bias_factor=1.0)
    assert a.coverage.complete and "torch.mean" in a.coverage.rules
    torch.testing.assert_close(a.embedding_relevance, b.embedding_relevance, rtol=1e-12, atol=1e-12)
    score = a.output[:, 0]
    torch.testing.assert_close(a.token_relevance.sum(1) + a.initial_state_relevance, score, rtol=1e-9, atol=1e-9)


def test_length_aware_mean_pooling_conserves_and_ignores_padding():
    model = LengthMeanPooled(make("pooled", pool="mean")).eval()
    ids = torch.randint(1, 30, (3, 7))
    lengths = torch.tensor([7, 2, 4])
    result = seqlrp.explain_text(model, ids, lengths=lengths, epsilon=0.01, bias_factor=1.0)
    assert result.coverage.complete, result.coverage
    assert "torch.sum" in result.coverage.rules and "torch.div" in result.coverage.rules
    score = result.output.gather(1, result.target[:, None])[:, 0]
    # the full-length row conserves; in padded rows the sum's ε share that lands on the padded
    # (zero) summands is absorbed by the 0/1 mask: the model really sums over T positions
    torch.testing.assert_close(result.token_relevance[0].sum() + result.initial_state_relevance[0], score[0],
                               rtol=1e-9, atol=1e-9)
    assert torch.equal(result.token_relevance[1, 2:], torch.zeros(5, dtype=torch.float64))
    assert torch.equal(result.token_relevance[2, 4:], torch.zeros(3, dtype=torch.float64))
