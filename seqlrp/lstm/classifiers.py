"""Text classifiers beyond "last state -> Linear", each fully covered by LRP rules (no CoverageWarning).

All take ``(token_ids (B, T), lengths (B,) = None)``, pack their sequences when ``lengths`` are given
(padding is never read) and mask padded positions in their pooling, so a sentence is explained the same
alone or in a padded batch:

* :class:`AttentionRNNClassifier` -- (Bi)LSTM or GRU, additive attention pooling (Bahdanau):
  :math:`a = \\mathrm{softmax}(v^\\top \\tanh(W h_t))`, :math:`c = \\sum_t a_t h_t`; the weights are a gate
  (relevance to each :math:`h_t` in proportion to :math:`a_t h_t`, none through the scores).
* :class:`MaxPoolRNNClassifier` -- (Bi)LSTM or GRU, max over time (winner takes all).
* :class:`KimCNN` -- Kim (2014): Conv1d filters of several widths over the embeddings, ReLU, max over
  time, dropout, Linear.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class _Encoder(nn.Module):
    """Embedding -> (Bi)LSTM/GRU over packed sequences -> padded outputs ``(B, T, D)`` and the valid mask."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, rnn: str, bidirectional: bool,
                 padding_idx: int | None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        cls = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn]
        self.rnn = cls(embedding_dim, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.out_features = hidden_size * (2 if bidirectional else 1)

    def encode(self, ids: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        x = self.embedding(ids)
        steps = ids.shape[1]
        if lengths is None:
            return self.rnn(x)[0], torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
        packed = pack_padded_sequence(x, torch.as_tensor(lengths).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=steps)
        mask = torch.arange(steps, device=ids.device)[None, :] < torch.as_tensor(lengths, device=ids.device)[:, None]
        return out, mask


class AttentionRNNClassifier(_Encoder):
    """Embedding -> (Bi)LSTM/GRU -> additive attention pooling -> Linear (see the module docstring)."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_classes: int, rnn: str = "lstm",
                 bidirectional: bool = True, attention_size: int | None = None, padding_idx: int | None = 0):
        super().__init__(vocab_size, embedding_dim, hidden_size, rnn, bidirectional, padding_idx)
        attention_size = attention_size or self.out_features
        self.attention = nn.Linear(self.out_features, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)
        self.classifier = nn.Linear(self.out_features, num_classes)

    def forward(self, token_ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        h, mask = self.encode(token_ids, lengths)
        scores = self.score(torch.tanh(self.attention(h)))[..., 0].masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return self.classifier(torch.bmm(weights[:, None, :], h)[:, 0])


class MaxPoolRNNClassifier(_Encoder):
    """Embedding -> (Bi)LSTM/GRU -> max over the valid time steps -> Linear."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_classes: int, rnn: str = "lstm",
                 bidirectional: bool = True, padding_idx: int | None = 0):
        super().__init__(vocab_size, embedding_dim, hidden_size, rnn, bidirectional, padding_idx)
        self.classifier = nn.Linear(self.out_features, num_classes)

    def forward(self, token_ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        h, mask = self.encode(token_ids, lengths)
        return self.classifier(h.masked_fill(~mask[..., None], float("-inf")).max(dim=1).values)


class KimCNN(nn.Module):
    """Kim (2014): Conv1d filters of several widths over the embeddings, ReLU, max over time, dropout, Linear.

    The convolutions are padded by ``width - 1`` on both sides, so any sentence length works and the padding
    row of the embedding (zeros) is exactly the convolution's own zero padding: with ``lengths`` the max runs
    over the ``length + width - 1`` positions that see the sentence, and a sentence is explained the same
    alone or in a padded batch. (Not with ``bias_factor > 0``: a window's bias share then reaches the padding
    tokens it covers, and explain_text warns; explain sentences of one length together for that.)
    """

    def __init__(self, vocab_size: int, embedding_dim: int, num_classes: int, widths: tuple[int, ...] = (3, 4, 5),
                 filters: int = 32, dropout: float = 0.5, padding_idx: int | None = 0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, filters, w, padding=w - 1) for w in widths)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(filters * len(widths), num_classes)

    def forward(self, token_ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        x = self.embedding(token_ids).transpose(1, 2)  # (B, E, T)
        pooled = []
        for conv in self.convs:
            h = self.relu(conv(x))  # (B, F, T + width - 1)
            if lengths is not None:
                width = conv.kernel_size[0]
                valid = torch.arange(h.shape[2], device=h.device)[None, :] < \
                    torch.as_tensor(lengths, device=h.device)[:, None] + width - 1
                h = h.masked_fill(~valid[:, None, :], float("-inf"))
            pooled.append(h.max(dim=2).values)
        return self.classifier(self.dropout(torch.cat(pooled, dim=1)))
