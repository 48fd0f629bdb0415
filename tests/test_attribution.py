"""``seqlrp.Attribution``: Captum's ``attribute`` interface over explain / explain_text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import seqlrp

from .core.helpers import assert_unchanged, snapshot


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()


@pytest.mark.parametrize("target", [None, 3, [0, 1, 4], (2, 2, 2), np.array([4, 3, 0]), torch.tensor([1, 0, 2]),
                                    torch.tensor(2), torch.tensor([[1], [0], [2]])])
def test_attribute_matches_explain_for_every_captum_target_form(target):
    model, x = _cnn(), torch.rand(3, 3, 8, 8)
    before = snapshot(model)
    relevance = seqlrp.Attribution(model, seqlrp.EpsilonEverywhere()).attribute(x, target=target)
    assert isinstance(relevance, torch.Tensor) and relevance.shape == x.shape and relevance.dtype == x.dtype
    expected_target = None if target is None else torch.as_tensor(np.asarray(target)).reshape(-1).long()
    if expected_target is not None and expected_target.numel() == 1:
        expected_target = int(expected_target)
    expected = seqlrp.explain(model, x, expected_target, seqlrp.EpsilonEverywhere()).relevance
    torch.testing.assert_close(relevance, expected)
    assert_unchanged(model, before)


def test_convergence_delta_and_baselines():
    model, x = _cnn(), torch.rand(2, 3, 8, 8)
    relevance, delta = seqlrp.Attribution(model).attribute(x, target=1, return_convergence_delta=True)
    seed = model(x)[:, 1].detach()
    torch.testing.assert_close(delta, relevance.flatten(1).sum(1) - seed)
    gradient = seqlrp.Attribution(model, method="gradient_x_input").attribute(x, 1)
    torch.testing.assert_close(gradient, seqlrp.baselines.gradient_x_input(model, x, 1).relevance)


def test_additional_forward_args_are_passed_to_the_forward():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x, scale):
            return self.linear(x * scale)

    model, x = Scaled().eval(), torch.randn(2, 4)
    one = seqlrp.Attribution(model).attribute(x, 0, additional_forward_args=(torch.tensor(1.0),))
    two = seqlrp.Attribution(model).attribute(x, 0, additional_forward_args=torch.tensor(2.0))
    assert one.shape == x.shape and not torch.allclose(one, two)


def test_additional_forward_args_leave_the_model_as_it_was_and_train_mode_refused():
    """The wrapper that passes the extra arguments must not switch the user's model to eval mode."""

    class Dropped(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear, self.drop = nn.Linear(4, 3), nn.Dropout(0.5)

        def forward(self, x, scale):
            return self.drop(self.linear(x)) * scale

    model, x, args = Dropped(), torch.randn(2, 4), (torch.tensor(1.0),)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match=r"training mode.*drop' \(Dropout\).*model\.eval\(\)"):
        seqlrp.Attribution(model).attribute(x, 0, additional_forward_args=args)
    assert_unchanged(model, before)
    assert model.training and model.drop.training
    model.eval()
    before = snapshot(model)
    seqlrp.Attribution(model).attribute(x, 0, additional_forward_args=args)
    assert_unchanged(model, before)


def test_token_ids_give_one_relevance_per_token():
    torch.manual_seed(0)
    model = seqlrp.lstm.BiLSTMClassifier(10, 4, 3, 2).double().eval()
    ids, lengths = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    relevance = seqlrp.Attribution(model).attribute(ids, target=[1, 0], additional_forward_args=(lengths,))
    expected = seqlrp.explain_text(model, ids, torch.tensor([1, 0]), lengths=lengths).token_relevance
    assert relevance.shape == ids.shape
    torch.testing.assert_close(relevance, expected)


def test_bad_targets_and_inputs_are_clear_errors():
    model, x = _cnn(), torch.rand(2, 3, 8, 8)
    attribution = seqlrp.Attribution(model)
    with pytest.raises(ValueError, match=r"one class index per sample \(2,\)"):
        attribution.attribute(x, target=[1, 2, 3])
    with pytest.raises(TypeError, match=r"class indices \(integers\)"):
        attribution.attribute(x, target=torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="out of range"):
        attribution.attribute(x, target=7)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        attribution.attribute(x.numpy())
    with pytest.raises(ValueError, match="method must be one of"):
        seqlrp.Attribution(model, method="shap")


def test_same_code_runs_captum_and_seqlrp():
    captum = pytest.importorskip("captum.attr", reason="captum is not installed; the Captum side-by-side is skipped")
    model, x = _cnn(), torch.rand(2, 3, 8, 8)
    for method in (captum.InputXGradient(model), seqlrp.Attribution(model, method="gradient_x_input")):
        attributions = method.attribute(x, target=[1, 3])
        assert attributions.shape == x.shape
    torch.testing.assert_close(captum.InputXGradient(model).attribute(x, target=[1, 3]),
                               seqlrp.Attribution(model, method="gradient_x_input").attribute(x, target=[1, 3]))


class _NextToken(nn.Module):
    """A causal LM as a function of its input embeddings: the next-token logits after the last position."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, embeds):
        return self.lm(inputs_embeds=embeds, use_cache=False).logits[:, -1]


def _hf_text_models():
    transformers = pytest.importorskip("transformers")
    from .recurrent.models import tiny_classifier, tiny_lm

    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_embd=8, n_layer=1, n_head=2, n_positions=16, vocab_size=16, bos_token_id=1, eos_token_id=2,
        attn_implementation="eager")).eval().double()
    return {"mamba": tiny_lm("mamba"), "gpt2": gpt2, "rwkv-classifier": tiny_classifier("rwkv", "mean")}


@pytest.mark.parametrize("name", ["mamba", "gpt2", "rwkv-classifier"])
def test_hugging_face_text_models_give_explain_text_s_token_relevance(name):
    model = _hf_text_models()[name]
    ids, mask = torch.tensor([[3, 4, 5, 0], [1, 2, 3, 4]]), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    before = snapshot(model)
    attribution = seqlrp.Attribution(model)
    relevance, delta = attribution.attribute(ids, target=[2, 1], additional_forward_args=(mask,),
                                             return_convergence_delta=True)
    expected = seqlrp.explain_text(model, {"input_ids": ids, "attention_mask": mask}, torch.tensor([2, 1]))
    assert relevance.shape == ids.shape
    torch.testing.assert_close(relevance, expected.relevance, rtol=0, atol=0)
    logit = expected.output.gather(1, expected.target[:, None])[:, 0].double()
    torch.testing.assert_close(delta, expected.total() + expected.explanation.parameter_relevance_sum - logit)
    batch = {"input_ids": ids, "attention_mask": mask}  # (a tokenizer's output: input_kind says "text")
    torch.testing.assert_close(attribution.attribute(batch, target=[2, 1]), expected.relevance, rtol=0, atol=0)
    quantus = seqlrp.quantus_explain(model, ids[1:].numpy(), np.array([1]))
    alone = seqlrp.explain_text(model, ids[1:], 1).relevance
    np.testing.assert_allclose(quantus, alone.numpy(), rtol=0, atol=0)
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match=r"\(attention_mask,\) of the ids' shape \(2, 4\)"):
        attribution.attribute(ids, target=1, additional_forward_args=(torch.tensor([3, 4]),))


def test_hugging_face_baselines_match_the_embedding_route():
    model = _hf_text_models()["mamba"]
    ids = torch.tensor([[3, 4, 5, 6]])
    embeds = model.get_input_embeddings()(ids).detach()
    x_grad = seqlrp.Attribution(model, method="gradient_x_input").attribute(ids, target=4)
    reference = seqlrp.baselines.gradient_x_input(_NextToken(model), embeds, 4)
    torch.testing.assert_close(x_grad, reference.relevance.sum(-1), rtol=1e-10, atol=1e-12)
    sensitivity = seqlrp.Attribution(model, method="gradient").attribute(ids, target=4)
    reference = seqlrp.baselines.gradient(_NextToken(model), embeds, 4)
    torch.testing.assert_close(sensitivity, reference.relevance.pow(2).sum(-1), rtol=1e-10, atol=1e-12)
