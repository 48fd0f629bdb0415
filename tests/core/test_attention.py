"""nn.MultiheadAttention with LRP rules: the module's own outputs (float64), relevance to the values only,
equal to the same network written with functional calls, and complete coverage."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seqlrp

from .helpers import untouched

CONFIGS = {
    "self": {}, "no bias": {"bias": False}, "kdim/vdim": {"kdim": 5, "vdim": 3},
    "key padding": {"padding": True}, "attn mask (bool)": {"mask": "bool"}, "attn mask (float)": {"mask": "float"},
    "causal": {"causal": True}, "unbatched": {"unbatched": True}, "sequence first": {"batch_first": False},
}


class Attend(nn.Module):
    def __init__(self, kdim=None, vdim=None, bias=True, padding=False, mask=None, causal=False, unbatched=False,
                 batch_first=True):
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first)
        self.key = nn.Linear(4, kdim or 8)
        self.value = nn.Linear(4, vdim or 8)
        self.query = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)
        self.options = {"padding": padding, "mask": mask, "causal": causal, "unbatched": unbatched,
                        "batch_first": batch_first}

    def forward(self, x):
        o = self.options
        q, k, v = self.query(x), self.key(x), self.value(x)
        kwargs = {}
        length = x.shape[1]
        if o["padding"]:
            kwargs["key_padding_mask"] = torch.arange(length)[None, :].expand(x.shape[0], length) >= length - 1
        if o["mask"] == "bool":
            kwargs["attn_mask"] = torch.ones(length, length, dtype=torch.bool).triu(1)
        if o["mask"] == "float":
            kwargs["attn_mask"] = torch.linspace(-1, 0, length * length, dtype=x.dtype).view(length, length)
        if o["causal"]:
            kwargs.update(attn_mask=nn.Transformer.generate_square_subsequent_mask(length, dtype=x.dtype),
                          is_causal=True)
        if o["unbatched"]:
            out = torch.stack([self.mha(q[i], k[i], v[i], **kwargs)[0] for i in range(x.shape[0])])
        elif not o["batch_first"]:
            out = self.mha(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), **kwargs)[0].transpose(0, 1)
        else:
            out, weights = self.mha(q, k, v, **kwargs)
            assert weights.shape == (x.shape[0], length, length)
        return self.head(out.mean(1))


@pytest.mark.parametrize("config", list(CONFIGS))
def test_outputs_equal_the_module_and_coverage_is_complete(config):
    torch.manual_seed(0)
    model = Attend(**CONFIGS[config]).double().eval()
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        with untouched(model):
            result = seqlrp.explain(model, x, composite=seqlrp.EpsilonEverywhere(1e-9, bias_factor=1.0))
    with torch.no_grad():
        torch.testing.assert_close(result.output, model(x), rtol=1e-12, atol=1e-12)
    assert result.coverage.rules["mha"].startswith("MultiheadAttention")
    rows = {row.name for row in result.conservation()}
    assert "mha.v_proj" in rows and "mha.q_proj" not in rows and "mha.k_proj" not in rows  # gate: no relevance
    logit = result.output.gather(1, result.target[:, None])[:, 0]
    torch.testing.assert_close(result.relevance_sum, logit, rtol=1e-6, atol=1e-6)  # (the contractions' ε is lost)


def test_relevance_equals_the_functional_formulation():
    torch.manual_seed(0)
    model = Attend().double().eval()

    class Functional(nn.Module):
        """The same attention written with F.linear and scaled_dot_product_attention (functional rules)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            m = self.inner.mha
            q, k, v = self.inner.query(x), self.inner.key(x), self.inner.value(x)
            wq, wk, wv = m.in_proj_weight.chunk(3)
            bq, bk, bv = m.in_proj_bias.chunk(3)
            heads = [F.linear(t, w, b).view(3, 5, 2, 4).transpose(1, 2) for t, w, b in ((q, wq, bq), (k, wk, bk),
                                                                                        (v, wv, bv))]
            out = F.scaled_dot_product_attention(*heads).transpose(1, 2).reshape(3, 5, 8)
            return self.inner.head(F.linear(out, m.out_proj.weight, m.out_proj.bias).mean(1))

    x = torch.randn(3, 5, 4, dtype=torch.float64)
    composite = seqlrp.EpsilonEverywhere(0.01)
    expected = seqlrp.explain(Functional(model).eval(), x, target=2, composite=composite)
    result = seqlrp.explain(model, x, target=2, composite=composite)
    torch.testing.assert_close(result.output, expected.output, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.relevance, expected.relevance, rtol=1e-10, atol=1e-12)


def test_bias_kv_is_refused_by_name():
    class BiasKV(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(4, 2, add_bias_kv=True, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x)[0].mean(1)

    model = BiasKV().eval()
    with untouched(model), pytest.raises(seqlrp.NoRuleError, match=r"'mha': nn.MultiheadAttention with add_bias_kv"):
        seqlrp.explain(model, torch.randn(2, 3, 4))
