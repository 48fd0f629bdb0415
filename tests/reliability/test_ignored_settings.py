"""Settings that would be silently ignored are errors naming what was given and what exists (issue 25, item 5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seqlrp

from ..core.helpers import untouched
from .models import text_model

X = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
IDS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
        self.classifier = nn.Linear(6, 3)

    def forward(self, x):
        return self.classifier(self.features(x))


def net() -> nn.Module:
    torch.manual_seed(0)
    return Net().double().eval()


@pytest.mark.parametrize("key,closest", [("clasifier", "'classifier'"), ("feature.0", "'features.0'"),
                                         ("classifier.*", "'classifier'")])
def test_a_composite_key_that_matches_no_module_is_an_error(key, closest):
    model = net()
    composite = {key: ("epsilon", {"epsilon": 0.25}), **seqlrp.EpsilonEverywhere()}
    with untouched(model), pytest.raises(ValueError, match=rf"composite key {key!r} matches no module of Net; "
                                                            rf"closest module names: {closest}"):
        seqlrp.explain(model, X, composite=composite)


@pytest.mark.parametrize("key", ["classifier", "features.0", "feat*.0", "*fier", "features.[0]", "Net", "features"])
def test_keys_that_match_a_module_are_accepted(key):
    seqlrp.explain(net(), X, composite={key: "epsilon", **seqlrp.EpsilonEverywhere()})


def test_a_typo_in_explain_text_rules_is_an_error():
    model = text_model()
    with pytest.raises(ValueError, match=r"composite key 'clasifier' matches no module of BiLSTMClassifier; closest "
                                         r"module names: 'classifier'"):
        seqlrp.explain_text(model, IDS, rules={"clasifier": ("epsilon", {"epsilon": 0.1})})
    seqlrp.explain_text(model, IDS, rules={"classifier": ("epsilon", {"epsilon": 0.1})})


def test_attention_parts_are_names_too():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.head = nn.MultiheadAttention(4, 2, batch_first=True), nn.Linear(4, 3)

        def forward(self, x):
            return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))

    torch.manual_seed(0)
    model = Attention().double().eval()
    seqlrp.explain(model, torch.randn(2, 5, 4, dtype=torch.float64),
                   composite={"attn.v_proj": "zero", **seqlrp.EpsilonEverywhere()})


@pytest.mark.parametrize("tokens,match", [
    ([["a", "b", "c", "d"]], r"tokens must hold one list of strings per sequence \(2\), got 1"),
    ([["a", "b", "c", "d"], ["e", "f"]], r"tokens\[1\] has 2 tokens but the sequence has 4 positions"),
    ("a b c d", r"tokens must hold one list of strings per sequence"),
    ([["a", "b", "c", "d"], [1, 2, 3, 4]], r"tokens\[1\] must be strings, got int"),
])
def test_tokens_that_do_not_match_the_ids_are_an_error(tokens, match):
    with pytest.raises(ValueError, match=match):
        seqlrp.explain_text(text_model(), IDS, tokens=tokens)


def test_tokens_with_lengths_are_the_unpadded_words():
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    model = text_model(padding_idx=0)
    result = seqlrp.explain_text(model, ids, lengths=torch.tensor([4, 2]), tokens=[list("abcd"), list("ef")])
    assert result.tokens == [list("abcd"), list("ef")]
    padded = seqlrp.explain_text(model, ids, lengths=torch.tensor([4, 2]), tokens=[list("abcd"), list("ef__")])
    assert padded.tokens == [list("abcd"), list("ef")]  # (padding words dropped, as the reports show them)
    with pytest.raises(ValueError, match=r"tokens\[1\] has 3 tokens but the sequence has length 2 \(or 4 with "
                                         r"padding\)"):
        seqlrp.explain_text(model, ids, lengths=torch.tensor([4, 2]), tokens=[list("abcd"), list("efg")])
    one = seqlrp.explain_text(model, ids[:1], tokens=list("abcd"))  # one sentence: a flat list
    assert one.tokens == [list("abcd")]


@pytest.mark.parametrize("target,error,match", [
    (torch.tensor(1.0), TypeError, r"target must hold class indices \(integers\), got dtype torch.float32"),
    (torch.tensor(True), TypeError, r"got a bool"),
    (1.0, TypeError, r"class indices \(integers\)"),
    (True, TypeError, r"got a bool"),
    (np.float64(1.0) if (np := __import__("numpy")) else None, TypeError, r"class indices \(integers\)"),
])
def test_attribution_refuses_the_targets_explain_refuses(target, error, match):
    model = net()
    with pytest.raises(error, match=match):
        seqlrp.explain(model, X, target=target)
    with untouched(model), pytest.raises(error, match=match):
        seqlrp.Attribution(model).attribute(X, target=target)


def test_a_key_naming_a_module_that_canonization_fused_says_so():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    model = model.double().eval()
    composite = seqlrp.cnn.EpsilonPlusFlat()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    canonical = composite.canonize(model)
    names = {name for name, _ in canonical.named_modules()}
    if "1" in names:
        pytest.skip("the batch norm is kept by this canonization")
    with pytest.raises(ValueError, match=r"composite key '1' names module\(s\) of your model that canonization "
                                         r"replaced"):
        seqlrp.explain(model, x, composite=_with_key(composite, "1"))


def _with_key(composite, key):
    """The preset with one more name key in front (its canonization kept)."""

    class WithKey(type(composite)):
        def __init__(self):
            super().__init__()
            self._rules = {key: self._rules[next(iter(self._rules))], **self._rules}

    return WithKey()
