"""``seqlrp.transformers.batching``: texts batched by token count (no padding), truncation to what the model reads,
one text per batch for a model without a padding id; ``explain_transformer(mode=...)``'s gradient baselines;
``explain_text(tokenizer=, labels=)`` through the Hugging Face route."""

from __future__ import annotations

import pytest
import torch

import seqlrp
from seqlrp.transformers import explain_transformer
from seqlrp.transformers.batching import batch_size_for, class_names, explain_texts, plan, token_limit

from .tiny import tiny, tiny_tokenizer

TEXTS = ["good", "bad film", "", "great", "a wonderful movie", ["the", "plot"], "not good", "   "]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_batches_hold_one_token_count_and_kind(tokenizer):
    schedule = plan(tokenizer, TEXTS, batch_size=2, limit=None)
    assert schedule.lengths.tolist() == [3, 4, 0, 3, 6, 4, 4, 0] and schedule.truncated == []
    assert schedule.batches == [[0, 3], [1, 6], [5], [4]]  # (a list of words is its own kind: split differently)
    cut = plan(tokenizer, ["good " * 10, "bad"], batch_size=8, limit=6)
    assert cut.truncated == [0] and cut.lengths.tolist() == [6, 3]


def test_limits_and_batch_sizes(tokenizer):
    model = tiny("bert")
    assert token_limit(model, tokenizer) == 64 and batch_size_for(model, 8) == 8
    model.config.pad_token_id = None
    assert batch_size_for(model, 8) == 1
    assert class_names(model) is None
    model.config.id2label = {0: "neg", 1: "neu", 2: "pos"}
    assert class_names(model) == ["neg", "neu", "pos"]


def test_explain_texts_equals_each_text_alone(tokenizer):
    model = tiny("bert")
    seen = set()
    for rows, _, result in explain_texts(model, tokenizer, TEXTS, target=2, batch_size=3):
        for j, row in enumerate(rows):
            seen.add(row)
            text = TEXTS[row]
            alone = seqlrp.explain_text(model, tokenizer([text], is_split_into_words=isinstance(text, list),
                                                         return_tensors="pt"), 2, tokenizer=tokenizer)
            assert torch.allclose(result.relevance[j], alone.relevance[0], rtol=0,
                                  atol=1e-9 * float(alone.relevance.abs().max()))
            assert [w.text for w in result.words[j]] == [w.text for w in alone.words[0]]
    assert seen == {0, 1, 3, 4, 5, 6}  # (blank texts are not explained)


def test_gradient_modes_are_the_plain_gradients_of_the_word_embeddings(tokenizer):
    model = tiny("bert")
    batch = tokenizer(["a good movie", "bad film !"], return_tensors="pt")
    embeddings = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
    output = model(inputs_embeds=embeddings, attention_mask=batch["attention_mask"],
                   token_type_ids=batch["token_type_ids"]).logits
    (grad,) = torch.autograd.grad(output[:, 1].sum(), embeddings)
    x_input = explain_transformer(model, batch, 1, seed="one", mode="gradient_x_input")
    sensitivity = explain_transformer(model, batch, 1, seed="one", mode="gradient")
    assert torch.allclose(x_input.relevance, (grad * embeddings).sum(-1), rtol=1e-10, atol=1e-14)
    assert torch.allclose(sensitivity.relevance, grad.pow(2).sum(-1), rtol=1e-10, atol=1e-14)
    assert x_input.words is not None and sensitivity.coverage.rules == {}
    with pytest.raises(ValueError, match="mode must be one of"):
        explain_transformer(model, batch, mode="lrp2")


def test_explain_text_takes_a_tokenizer_and_labels(tokenizer):
    model = tiny("bert")
    batch = tokenizer(["unforgettable"], return_tensors="pt")
    result = seqlrp.explain_text(model, batch, 0, tokenizer=tokenizer, labels=["neg", "neu", "pos"])
    assert [w.text for w in result.words[0]] == ["[CLS]", "unforgettable", "[SEP]"] and result.labels[0] == "neg"
    with pytest.raises(TypeError, match="tokenizer= is for Hugging Face models"):
        seqlrp.explain_text(seqlrp.lstm.BiLSTMClassifier(10, 4, 3, 2).eval(), torch.tensor([[1, 2]]),
                            tokenizer=tokenizer)
