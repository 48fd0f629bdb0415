"""``seqlrp.explain_text`` on the recurrent families' Hugging Face causal LMs (``MambaForCausalLM``, ...): the
next-token logits at each sequence's last real token, the default composite by family, padding, equality with
``seqlrp.explain`` on the embeddings, and the accounting of every share of the logit."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.recurrent.text import check_padding, family_of, last_real, padding_side

from ..core.helpers import untouched

pytest.importorskip("transformers")

from .models import FAMILIES, tiny_lm  # noqa: E402

ALL = sorted(FAMILIES)
MASKED = ["mamba", "mamba2"]  # (transformers zeroes their padded positions: left padding exact)


def strict_text(model, batch, target=None, composite=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        return seqlrp.explain_text(model, batch, target, composite)


class NextToken(nn.Module):
    """The causal LM as a function of its input embeddings: the next-token logits after the last position."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, embeds):
        return self.lm(inputs_embeds=embeds, use_cache=False).logits[:, -1]


def ids(*rows, generator_seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(generator_seed)
    return torch.randint(1, 16, (len(rows), max(rows)), generator=g)


@pytest.mark.parametrize("family", ALL)
def test_a_causal_lm_equals_explain_on_its_embeddings_and_accounts_for_the_logit(family):
    model = tiny_lm(family)
    tokens = torch.randint(1, 16, (2, 6), generator=torch.Generator().manual_seed(1))
    with untouched(model):
        result = strict_text(model, tokens, target=torch.tensor([3, 11]))
    assert family_of(model) == family
    assert result.coverage.rules["<composite>"] == "RecurrentLRP(epsilon=1e-06, output_gate='signal_takes_all')"
    assert result.read_at.tolist() == [5, 5] and result.relevance.shape == (2, 6)
    with torch.no_grad():  # the explained output is the model's own next-token logits (transformers: float32 parts)
        torch.testing.assert_close(result.output.double(), model(input_ids=tokens).logits[:, -1].double(),
                                   rtol=1e-5, atol=1e-6)
    embeds = model.get_input_embeddings()(tokens).detach()
    direct = seqlrp.explain(NextToken(model), embeds, torch.tensor([3, 11]), composite=seqlrp.recurrent.RecurrentLRP())
    torch.testing.assert_close(result.relevance, direct.relevance.sum(-1), rtol=1e-10, atol=1e-12)
    assert float(result.relevance.abs().min()) > 0  # (every token gets relevance: not a vacuous match)
    # nothing leaves unreported: tokens + embedding shares + parameters + what biases and ε absorbed = the logit
    logit = result.output.gather(1, result.target[:, None])[:, 0].double()
    accounted = result.total() + result.explanation.parameter_relevance_sum + result.absorbed()
    torch.testing.assert_close(accounted, logit, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("family", ALL)
def test_with_zero_biases_the_tokens_and_parameters_are_the_logit(family):
    model = tiny_lm(family)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.LayerNorm)) and module.bias is not None:
                module.bias.zero_()
    tokens = torch.randint(1, 16, (2, 5), generator=torch.Generator().manual_seed(2))
    result = strict_text(model, tokens, composite=seqlrp.recurrent.RecurrentLRP(epsilon=1e-12))
    logit = result.output.gather(1, result.target[:, None])[:, 0].double()
    total = result.total() + result.explanation.parameter_relevance_sum
    torch.testing.assert_close(total, logit, rtol=1e-7, atol=1e-9)


def test_targets_are_vocabulary_ids():
    model = tiny_lm("mamba")
    tokens = torch.randint(1, 16, (3, 4), generator=torch.Generator().manual_seed(3))
    predicted = seqlrp.explain_text(model, tokens)
    assert torch.equal(predicted.target, predicted.output.argmax(1))  # None: the predicted next token
    fixed = seqlrp.explain_text(model, {"input_ids": tokens, "token_type_ids": torch.zeros_like(tokens)}, target=7)
    per_example = seqlrp.explain_text(model, tokens, target=torch.tensor([7, 2, 9]))
    assert fixed.target.tolist() == [7, 7, 7] and per_example.target.tolist() == [7, 2, 9]
    torch.testing.assert_close(per_example.relevance[0], fixed.relevance[0], rtol=0, atol=0)
    with pytest.raises(ValueError):
        seqlrp.explain_text(model, tokens, target=16)  # (past the vocabulary)


def _alone_and_padded(model, side: str):
    g = torch.Generator().manual_seed(4)
    short, long = torch.randint(1, 16, (1, 4), generator=g), torch.randint(1, 16, (1, 7), generator=g)
    pad = torch.zeros(1, 3, dtype=torch.long)
    padded = torch.cat([torch.cat([pad, short], 1) if side == "left" else torch.cat([short, pad], 1), long])
    mask = torch.ones_like(padded)
    if side == "left":
        mask[0, :3] = 0
    else:
        mask[0, 4:] = 0
    return short, long, {"input_ids": padded, "attention_mask": mask}


@pytest.mark.parametrize("family", ALL)
@pytest.mark.parametrize("side", ["left", "right"])
def test_a_sentence_alone_equals_it_in_a_padded_batch_or_the_padding_is_refused(family, side):
    model = tiny_lm(family)
    short, long, batch = _alone_and_padded(model, side)
    if side == "left" and family not in MASKED:
        with pytest.raises(ValueError, match="pad on the right.*one length per batch"):
            seqlrp.explain_text(model, batch, target=5)
        return
    together = strict_text(model, batch, target=5)
    alone, long_alone = strict_text(model, short, target=5), strict_text(model, long, target=5)
    real = batch["attention_mask"][0].bool()
    assert together.read_at.tolist() == [6 if side == "left" else 3, 6]
    torch.testing.assert_close(together.relevance[0, real], alone.relevance[0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(together.relevance[1], long_alone.relevance[0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(together.output[0], alone.output[0], rtol=1e-9, atol=1e-12)
    assert float(together.relevance[0, ~real].abs().max()) == 0.0  # padding gets nothing


def test_padding_helpers():
    assert padding_side(torch.tensor([[1, 1], [1, 1]])) == "none"
    assert padding_side(torch.tensor([[0, 1, 1], [1, 1, 1]])) == "left"
    assert padding_side(torch.tensor([[1, 1, 0], [1, 0, 0]])) == "right"
    assert padding_side(torch.tensor([[1, 0, 1]])) == "mixed"
    assert padding_side(torch.tensor([[0, 1, 1], [1, 1, 0]])) == "mixed"
    assert last_real(torch.tensor([[0, 0, 1], [1, 1, 0], [1, 1, 1]])).tolist() == [2, 1, 2]
    with pytest.raises(ValueError, match="row 1 has no real token"):
        padding_side(torch.tensor([[1, 1], [0, 0]]))
    with pytest.raises(ValueError, match="xLSTM ignores attention_mask.*pad on the right"):
        check_padding("xlstm", torch.tensor([[0, 1], [1, 1]]))
    with pytest.raises(ValueError, match="Mamba: attention_mask mixes"):
        check_padding("mamba", torch.tensor([[1, 0, 1]]))
    check_padding("mamba", torch.tensor([[0, 1], [1, 1]]))
    check_padding(None, torch.tensor([[1, 0, 1]]))  # (not a recurrent family: its own business)


def test_per_token_logits_of_a_model_that_does_not_generate_are_refused():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                                     vocab_size=16, max_position_embeddings=16, attn_implementation="eager")
    model = transformers.BertForMaskedLM(config).eval().double()
    with pytest.raises(ValueError, match="not a causal language model.*classification head"):
        seqlrp.explain_text(model, torch.tensor([[1, 2, 3]]))


def test_a_transformer_causal_lm_takes_attnlrp_and_its_last_real_token():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=8, n_layer=1, n_head=2, n_positions=16, vocab_size=16, bos_token_id=1,
                                     eos_token_id=2,
                                     attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval().double()
    short = torch.tensor([[4, 5, 6]])
    batch = {"input_ids": torch.tensor([[4, 5, 6, 0, 0], [1, 2, 3, 4, 5]]),
             "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}
    together = strict_text(model, batch, target=3)
    alone = strict_text(model, short, target=3)
    assert "AttnLRP" in together.coverage.rules["<composite>"] and together.read_at.tolist() == [2, 4]
    torch.testing.assert_close(together.relevance[0, :3], alone.relevance[0], rtol=1e-9, atol=1e-12)


def test_the_docs_examples_run(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "recurrent.md").read_text()
    section = text.split("## Token ids in: `explain_text`", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 6  # (one per family, and the classifier)
    for block in blocks:
        scope: dict = {}
        with warnings.catch_warnings():
            warnings.simplefilter("error", seqlrp.CoverageWarning)
            exec(compile(block, "docs/recurrent.md", "exec"), scope)  # noqa: S102 - the documentation's own code
        result = scope["result"]
        assert result.relevance.shape == result.attention_mask.shape and float(result.relevance.abs().sum()) > 0
        assert result.coverage.rules["<composite>"] == "RecurrentLRP(epsilon=1e-06, output_gate='signal_takes_all')"
    assert "tensor([2, 4])" in capsys.readouterr().out  # (the RWKV example's read_at)


def test_lengths_stand_for_right_padding_and_tokens_are_kept():
    model = tiny_lm("rwkv")
    ids, mask = torch.tensor([[4, 5, 6, 0], [1, 2, 3, 4]]), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    words = [["a", "b", "c", "<pad>"], ["d", "e", "f", "g"]]
    by_lengths = seqlrp.explain_text(model, ids, 3, lengths=torch.tensor([3, 4]), tokens=words)
    by_mask = seqlrp.explain_text(model, {"input_ids": ids, "attention_mask": mask}, 3)
    assert torch.equal(by_lengths.relevance, by_mask.relevance) and by_lengths.read_at.tolist() == [2, 3]
    assert by_lengths.tokens == words
    with pytest.raises(ValueError, match="either attention_mask .* or lengths="):
        seqlrp.explain_text(model, {"input_ids": ids, "attention_mask": mask}, 3, lengths=torch.tensor([3, 4]))
