"""Small text classifiers of the kinds users write (test fixtures)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class LastStateClassifier(nn.Module):
    """Embedding -> (Bi)LSTM/GRU (packed) -> h_n of the last layer (both directions) -> MLP."""

    def __init__(self, rnn="lstm", vocab=30, emb=6, hidden=5, layers=1, bidirectional=True, classes=3,
                 bias=True, batch_first=True):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        cls = nn.LSTM if rnn == "lstm" else nn.GRU
        self.rnn = cls(emb, hidden, num_layers=layers, bidirectional=bidirectional, bias=bias,
                       batch_first=batch_first)
        self.batch_first = batch_first
        d = 2 if bidirectional else 1
        self.head = nn.Sequential(nn.Linear(d * hidden, 8, bias=bias), nn.ReLU(), nn.Linear(8, classes, bias=bias))
        self.directions = d

    def forward(self, ids, lengths=None):
        x = self.embedding(ids)
        if not self.batch_first:
            x = x.transpose(0, 1)
        if lengths is not None:
            x = pack_padded_sequence(x, lengths.cpu(), batch_first=self.batch_first, enforce_sorted=False)
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        last = torch.cat([h_n[-i] for i in range(self.directions, 0, -1)], dim=-1)
        return self.head(last)


class PooledClassifier(nn.Module):
    """Embedding -> BiLSTM over padded output -> max or mean over time -> Linear."""

    def __init__(self, pool="max", vocab=30, emb=6, hidden=5, classes=3):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, classes)
        self.pool = pool

    def forward(self, ids):
        out, _ = self.lstm(self.embedding(ids))
        pooled = out.max(dim=1).values if self.pool == "max" else out.mean(dim=1)
        return self.out(pooled)


class PackedOutputClassifier(nn.Module):
    """Uses the packed output sequence, unpacks it and indexes each sequence's last position."""

    def __init__(self, vocab=30, emb=6, hidden=5, classes=3):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.out = nn.Linear(hidden, classes)

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)
        last = out[torch.arange(ids.shape[0]), lengths - 1]
        return self.out(last)


def make(kind="lstm", seed=0, **kw):
    torch.manual_seed(seed)
    cls = {"pooled": PooledClassifier, "packed_output": PackedOutputClassifier}.get(kind, LastStateClassifier)
    model = cls(**kw) if kind in ("pooled", "packed_output") else cls(rnn=kind, **kw)
    for p in model.parameters():  # larger weights: saturating gates, non-trivial relevance
        nn.init.normal_(p, std=0.6)
    return model.double().eval()
