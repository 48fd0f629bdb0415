"""``seqlrp.recurrent.SequenceClassifier``: a recurrent backbone under a linear head, token ids in, logits out;
trainable, explained by ``seqlrp.explain_text`` (equal to ``seqlrp.explain`` on its embeddings), padding."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.recurrent import SequenceClassifier

from ..core.helpers import untouched

pytest.importorskip("transformers")

from .models import FAMILIES, tiny_backbone, tiny_classifier  # noqa: E402

ALL = sorted(FAMILIES)


class Embeds(nn.Module):
    """The classifier as a function of its input embeddings (an independent route: written out here)."""

    def __init__(self, model: SequenceClassifier, mask: torch.Tensor):
        super().__init__()
        self.model, self.mask = model, mask

    def forward(self, embeds):
        h = self.model.backbone(inputs_embeds=embeds, use_cache=False).last_hidden_state
        real = self.mask.bool()
        if self.model.pool == "mean":
            pooled = torch.stack([h[i, real[i]].sum(0) / real[i].sum() for i in range(len(h))])
        else:
            pooled = torch.stack([h[i, int(real[i].nonzero().max())] for i in range(len(h))])
        return self.model.head(pooled)


def strict_text(model, batch, target=None, composite=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        return seqlrp.explain_text(model, batch, target, composite)


@pytest.mark.parametrize("family", ALL)
@pytest.mark.parametrize("pool", ["last", "mean"])
def test_explained_like_its_embeddings_and_right_padding_is_exact(family, pool):
    model = tiny_classifier(family, pool)
    g = torch.Generator().manual_seed(5)
    short, long = torch.randint(1, 16, (1, 3), generator=g), torch.randint(1, 16, (1, 5), generator=g)
    batch = {"input_ids": torch.cat([torch.cat([short, torch.zeros(1, 2, dtype=torch.long)], 1), long]),
             "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}
    with untouched(model):
        together = strict_text(model, batch, target=torch.tensor([2, 0]))
    assert "RecurrentLRP" in together.coverage.rules["<composite>"] and together.read_at is None
    alone = strict_text(model, short, target=2)
    torch.testing.assert_close(together.relevance[0, :3], alone.relevance[0], rtol=1e-9, atol=1e-12)
    assert float(together.relevance[0, 3:].abs().max()) == 0.0
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach()
    direct = seqlrp.explain(Embeds(model, batch["attention_mask"]), embeds, torch.tensor([2, 0]),
                            composite=seqlrp.recurrent.RecurrentLRP())
    torch.testing.assert_close(together.output, direct.output, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(together.relevance, direct.relevance.sum(-1) * batch["attention_mask"], rtol=1e-10,
                               atol=1e-12)
    logit = together.output.gather(1, together.target[:, None])[:, 0]
    accounted = together.total() + together.explanation.parameter_relevance_sum + together.absorbed()
    torch.testing.assert_close(accounted, logit, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("family", ["mamba", "mamba2"])
def test_left_padding_where_the_backbone_honours_the_mask(family):
    model = tiny_classifier(family, "mean")
    short = torch.tensor([[3, 9, 4]])
    batch = {"input_ids": torch.tensor([[0, 0, 3, 9, 4], [1, 2, 3, 4, 5]]),
             "attention_mask": torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])}
    together, alone = strict_text(model, batch, target=1), strict_text(model, short, target=1)
    torch.testing.assert_close(together.relevance[0, 2:], alone.relevance[0], rtol=1e-9, atol=1e-12)


def test_left_padding_is_refused_where_the_backbone_ignores_the_mask():
    model = tiny_classifier("rwkv")
    batch = {"input_ids": torch.tensor([[0, 3, 4], [1, 2, 3]]), "attention_mask": torch.tensor([[0, 1, 1], [1, 1, 1]])}
    with pytest.raises(ValueError, match="RWKV ignores attention_mask.*pad on the right"):
        model(**batch)  # (training too: the model itself would read the padding as tokens)
    with pytest.raises(ValueError, match="RWKV ignores attention_mask"):
        seqlrp.explain_text(model, batch)


def test_it_trains():
    model = tiny_classifier("mamba", "mean").train()
    ids, mask = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]]), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(ids, mask), torch.tensor([0, 2]))
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0  # (the backbone learns too)


def test_a_user_head_with_a_positional_forward():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.out = tiny_backbone("xlstm"), nn.Linear(8, 2).double()

        def forward(self, ids):
            return self.out(self.backbone(ids, use_cache=False).last_hidden_state[:, -1])

    model = Head().eval()
    result = strict_text(model, torch.tensor([[1, 5, 7]]), target=1)  # (called positionally: model(ids))
    same = SequenceClassifier(model.backbone, 2).double().eval()
    same.head.load_state_dict(model.out.state_dict())
    reference = strict_text(same, torch.tensor([[1, 5, 7]]), target=1)
    assert float(result.relevance.abs().min()) > 0
    torch.testing.assert_close(result.relevance, reference.relevance, rtol=1e-12, atol=1e-14)


def test_relevance_reaching_a_parameter_of_the_head_is_reported_and_accounted():
    class Extra(nn.Module):  # (learned features concatenated to the summary, like a class token: used directly)
        def __init__(self):
            super().__init__()
            self.backbone, self.out = tiny_backbone("mamba"), nn.Linear(12, 2).double()
            self.extra = nn.Parameter(torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(6)))

        def forward(self, input_ids, attention_mask=None):
            h = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            return self.out(torch.cat([h[:, -1], self.extra.expand(len(h), -1)], 1))

    model = Extra().eval()
    with untouched(model):
        result = strict_text(model, torch.tensor([[1, 5, 7], [2, 2, 9]]), target=0)
    assert set(result.parameter_relevance) == {"extra"} and result.parameter_relevance["extra"].shape == (2,)
    assert float(result.parameter_relevance["extra"].abs().min()) > 0
    logit = result.output[:, 0]
    accounted = result.total() + result.parameter_relevance["extra"] + result.absorbed()
    torch.testing.assert_close(accounted, logit, rtol=1e-10, atol=1e-12)
    without = result.total() + result.absorbed()  # (dropping it would break the accounting: not vacuous)
    assert float((without - logit).abs().min()) > 1e-6


def test_bad_arguments():
    backbone = tiny_backbone("mamba")
    with pytest.raises(ValueError, match="pool must be one of"):
        SequenceClassifier(backbone, 2, pool="max")
    with pytest.raises(TypeError, match="Hugging Face base model"):
        SequenceClassifier(nn.Linear(2, 2), 2)
