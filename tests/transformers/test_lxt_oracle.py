"""LXT 2.1 (rachtibat/LRP-eXplains-Transformers) as the oracle: its explicit functional rules on a small BERT-like
transformer written with plain torch ops, the same weights given to seqlrp; per-token relevance agrees in float64.

LXT's ``lxt.efficient`` imports only beside transformers < 5, so its explicit rules (``lxt.explicit.functional``:
``linear_epsilon``, ``add2``, ``matmul``, ``softmax``, ``layer_norm``; ``lxt.explicit.rules``: ``identity``,
``epsilon_lrp``) are used; test-only (install: ``pip install --no-deps lxt==2.1``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seqlrp
from seqlrp.transformers import CPLRP, AttnLRP

lf = pytest.importorskip("lxt.explicit.functional", reason="LXT 2.1 not installed (pip install --no-deps lxt==2.1)")
lr = pytest.importorskip("lxt.explicit.rules")

EPS = 1e-12
D, HEADS, LAYERS, FF, CLASSES = 8, 2, 2, 16, 3


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.up, self.down = nn.Linear(D, FF), nn.Linear(FF, D)


class TinyBert(nn.Module):
    """Post-LN encoder, GELU MLP, [CLS] pooler with tanh, padding mask: plain torch ops (seqlrp's functional mode
    gives them their rules)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln0, self.pool, self.head = nn.LayerNorm(D), nn.Linear(D, D), nn.Linear(D, CLASSES)
        self.position = nn.Parameter(torch.randn(1, 16, D) * 0.5)
        self.mask = None

    def forward(self, x):
        return forward(self, x, self.mask, Torch)


class Torch:
    linear = staticmethod(lambda layer, x: layer(x))
    add = staticmethod(lambda a, b: a + b)
    matmul = staticmethod(torch.matmul)
    softmax = staticmethod(lambda x: torch.softmax(x, -1))
    layer_norm = staticmethod(lambda layer, x: layer(x))
    gelu = staticmethod(F.gelu)
    tanh = staticmethod(torch.tanh)
    scale = staticmethod(lambda x, c: x * c)
    cp = False


class LXT:
    linear = staticmethod(lambda layer, x: lf.linear_epsilon(x, layer.weight, layer.bias, EPS))
    add = staticmethod(lambda a, b: lf.add2(a, b, False, EPS))
    matmul = staticmethod(lambda a, b: lf.matmul(a, b, False, EPS))
    softmax = staticmethod(lambda x: lf.softmax(x, -1))
    # (lf.layer_norm leaves LXT's stabilizer at its default 1e-6: its Function takes it as the last argument)
    layer_norm = staticmethod(lambda layer, x: lf.layer_norm_grad_fn.apply(x, layer.weight, layer.bias, layer.eps, EPS))
    gelu = staticmethod(lambda x: lr.identity(F.gelu, x))
    tanh = staticmethod(lambda x: lr.identity(torch.tanh, x))
    scale = staticmethod(lambda x, c: lf.mul2(x, c))  # (a constant factor: identity)
    cp = False


class LXTCP(LXT):
    cp = True


def forward(model, x, mask, ops):
    b, t, _ = x.shape
    h = ops.layer_norm(model.ln0, ops.add(x, model.position[:, :t]))  # (position embeddings: a constant summand)
    for block in model.blocks:
        q, k, v = ((ops.linear(layer, h).view(b, t, HEADS, D // HEADS).transpose(1, 2))
                   for layer in (block.q, block.k, block.v))
        if ops.cp:  # CP-LRP: the attention weights are constants; the values get ε
            with torch.no_grad():
                weights = torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(D // HEADS))
                                        .masked_fill(~mask[:, None, None, :], float("-inf")), -1)
            att = lr.epsilon_lrp(lambda u, w=weights: w @ u, EPS, v)
        else:
            scores = ops.scale(ops.matmul(q, k.transpose(-2, -1)), 1 / math.sqrt(D // HEADS))
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
            att = ops.matmul(ops.softmax(scores), v)
        att = ops.linear(block.o, att.transpose(1, 2).reshape(b, t, D))
        h = ops.layer_norm(block.ln1, ops.add(h, att))
        h = ops.layer_norm(block.ln2, ops.add(h, ops.linear(block.down, ops.gelu(ops.linear(block.up, h)))))
    return ops.linear(model.head, ops.tanh(ops.linear(model.pool, h[:, 0])))


def _lxt_relevance(model, x, mask, target, ops):
    x = x.clone().requires_grad_(True)
    out = forward(model, x, mask, ops)
    seed = torch.zeros_like(out)
    seed[torch.arange(len(out)), target] = out[torch.arange(len(out)), target].detach()
    out.backward(seed)
    return x.grad


@pytest.mark.parametrize(("preset", "ops"), [(AttnLRP, LXT), (CPLRP, LXTCP)])
def test_per_token_relevance_agrees_with_lxt(preset, ops):
    torch.manual_seed(0)
    model = TinyBert().double().eval()
    x = torch.randn(3, 6, D, dtype=torch.float64)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False  # a padded sentence
    mask[2, 5:] = False
    model.mask = mask
    target = torch.tensor([0, 2, 1])
    ours = seqlrp.explain(model, x, target=target, composite=preset(epsilon=EPS))
    assert not ours.coverage.unruled
    theirs = _lxt_relevance(model, x, mask, target, ops)
    assert torch.allclose(ours.relevance.sum(-1), theirs.sum(-1), atol=1e-8, rtol=0)
    assert torch.allclose(ours.relevance, theirs, atol=1e-8, rtol=0)
    assert ours.relevance[1, 4:].abs().max() == 0  # (padding: no relevance)
