"""Parity with Arras et al.'s original LSTM-LRP numbers (../shared/reference/lstm), via the public path.

All 24 sequences run as ONE padded batch with lengths (so padding is exercised too), for the 4
(eps, bias_factor) configs and every class as target: word relevance, per direction, R_rest, the
per-embedding-dimension arrays, the scores, and the sensitivity / gradient x input baselines.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqlrp


@pytest.fixture(scope="module")
def ref(reference_dir):
    with np.load(reference_dir / "reference_synthetic.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data}


def batch(ref, dtype=torch.long):
    off, lengths = ref["offsets"], ref["lengths"]
    ids = torch.zeros(len(lengths), int(lengths.max()), dtype=dtype)
    for n in range(len(lengths)):
        ids[n, : lengths[n]] = torch.from_numpy(ref["token_ids"][off[n]:off[n + 1]])
    return ids, torch.from_numpy(lengths)


def flat(values: torch.Tensor, ref) -> np.ndarray:
    """(N, T, ...) padded -> (sum T, ...) flat, as the reference stores it."""
    return np.concatenate([values[n, :length].numpy() for n, length in enumerate(ref["lengths"])])


@pytest.fixture(scope="module")
def model64(reference_dir):
    model, vocab = seqlrp.lstm.load_arras(reference_dir / "synthetic_model.npz")
    return model


def test_scores(ref, model64):
    ids, lengths = batch(ref)
    np.testing.assert_allclose(model64(ids, lengths).detach().numpy(), ref["scores"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", range(4))
def test_word_relevance_every_class_float64(ref, model64, k):
    ids, lengths = batch(ref)
    eps, bf = float(ref["config_eps"][k]), float(ref["config_bias_factor"][k])
    classes = ref["scores"].shape[1]
    worst = 0.0
    for c in range(classes):
        result = seqlrp.explain_text(model64, ids, target=c, lengths=lengths, epsilon=eps, bias_factor=bf)
        checks = {
            "R_words": flat(result.token_relevance, ref),
            "R_words_left": flat(result.direction_relevance[0].sum(-1), ref),
            "R_words_right": flat(result.direction_relevance[1].sum(-1), ref),
        }
        for key, ours in checks.items():
            np.testing.assert_allclose(ours, ref[key][k, c], rtol=1e-9, atol=1e-9, err_msg=f"{key} k={k} c={c}")
            worst = max(worst, float(np.abs(ours - ref[key][k, c]).max()))
        np.testing.assert_allclose(result.initial_state_relevance.numpy(), ref["R_rest"][k, c], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(result.token_relevance.sum(1).numpy(), ref["R_words_sum"][k, c],
                                   rtol=1e-9, atol=1e-9)
        if bf == 1.0:  # conservation: tokens + initial states == target score
            np.testing.assert_allclose(result.token_relevance.sum(1).numpy() + ref["R_rest"][k, c],
                                       ref["scores"][:, c], rtol=1e-9, atol=1e-9)
    assert worst <= 1e-9


@pytest.mark.parametrize("k", range(4))
def test_embedding_dimensions_predicted_class_float64(ref, model64, k):
    ids, lengths = batch(ref)
    eps, bf = float(ref["config_eps"][k]), float(ref["config_bias_factor"][k])
    result = seqlrp.explain_text(model64, ids, target=None, lengths=lengths, epsilon=eps, bias_factor=bf)
    assert result.target.numpy().tolist() == ref["pred_class"].tolist()
    np.testing.assert_allclose(flat(result.direction_relevance[0], ref), ref["R_dims_left_pred"][k],
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(flat(result.direction_relevance[1], ref), ref["R_dims_right_pred"][k],
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(flat(result.embedding_relevance, ref),
                               ref["R_dims_left_pred"][k] + ref["R_dims_right_pred"][k], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("k", range(4))
def test_float32_within_1e4_of_max_relevance(ref, reference_dir, k):
    model, _ = seqlrp.lstm.load_arras(reference_dir / "synthetic_model.npz", dtype=torch.float32)
    ids, lengths = batch(ref)
    eps, bf = float(ref["config_eps"][k]), float(ref["config_bias_factor"][k])
    for c in range(ref["scores"].shape[1]):
        result = seqlrp.explain_text(model, ids, target=c, lengths=lengths, epsilon=eps, bias_factor=bf)
        ours, expected = flat(result.token_relevance, ref), ref["R_words"][k, c]
        for n in range(len(ref["lengths"])):
            part = slice(ref["offsets"][n], ref["offsets"][n + 1])
            scale = np.abs(expected[part]).max()
            assert np.abs(ours[part] - expected[part]).max() <= 1e-4 * scale, (k, c, n)


def test_sensitivity_and_gradient_x_input_baselines(ref, model64):
    ids, lengths = batch(ref)
    target = torch.from_numpy(ref["pred_class"])
    sa = seqlrp.baselines.text_gradient(model64, ids, target, lengths=lengths)
    gi = seqlrp.baselines.text_gradient_x_input(model64, ids, target, lengths=lengths)
    np.testing.assert_allclose(flat(sa.token_relevance, ref), ref["SA_pred"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(flat(gi.token_relevance, ref), ref["GI_pred"], rtol=1e-9, atol=1e-12)


def test_unrolled_path_equals_reference_too(ref, model64):
    ids, lengths = batch(ref)
    k = 1  # eps 1e-3, bias_factor 1
    result = seqlrp.explain_text(model64, ids, target=2, lengths=lengths, epsilon=1e-3, bias_factor=1.0, fused=False)
    assert "[unrolled]" in result.coverage.rules["lstm"]
    np.testing.assert_allclose(flat(result.token_relevance, ref), ref["R_words"][k, 2], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.initial_state_relevance.numpy(), ref["R_rest"][k, 2], rtol=1e-9, atol=1e-9)
