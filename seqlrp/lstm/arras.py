"""Read and write the weight layout of Arras et al.'s LSTM-LRP code (``LRP_for_LSTM``).

Their bidirectional LSTM keeps ``Wxh_Left (4d, e)``, ``Whh_Left (4d, d)``, ``bxh_Left``, ``bhh_Left (4d,)``,
the same ``_Right`` (the backward LSTM), ``Why_Left``, ``Why_Right (C, d)`` and the embedding ``E (V, e)``,
with the gate blocks in the order **i, g, f, o**; PyTorch's ``nn.LSTM`` uses i, f, g, o. Swapping the
2nd and 3rd blocks maps one onto the other (the permutation is its own inverse).
"""

from __future__ import annotations

from os import PathLike

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


class BiLSTMClassifier(nn.Module):
    """Embedding -> bidirectional LSTM -> Linear on ``[h_left_T ; h_right_T]`` (Arras et al. 2017).

    ``forward(token_ids (B, T), lengths (B,) = None) -> logits (B, C)``; with ``lengths`` the
    sequences are packed, so padding is never read.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_classes: int,
                 output_bias: bool = False, padding_idx: int | None = None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden_size, num_classes, bias=output_bias)

    def forward(self, token_ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        x = self.embedding(token_ids)
        if lengths is not None:
            x = pack_padded_sequence(x, torch.as_tensor(lengths).cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(x)
        return self.classifier(torch.cat([h_n[-2], h_n[-1]], dim=-1))


def _swap_g_f(w: np.ndarray | Tensor):
    d = w.shape[0] // 4
    blocks = [w[:d], w[2 * d:3 * d], w[d:2 * d], w[3 * d:]]
    return np.concatenate(blocks) if isinstance(w, np.ndarray) else torch.cat(blocks)


_KEYS = ("Wxh_Left", "bxh_Left", "Whh_Left", "bhh_Left", "Wxh_Right", "bxh_Right", "Whh_Right", "bhh_Right",
         "Why_Left", "Why_Right", "E")


def load_arras(path: str | PathLike, dtype: torch.dtype = torch.float64) -> tuple[BiLSTMClassifier, list[str] | None]:
    """Build a :class:`BiLSTMClassifier` from an ``.npz`` in Arras's layout; returns ``(model, vocab)``.

    ``vocab`` is the list of token strings when the file has a ``vocab`` array, else ``None``.
    """
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in _KEYS if k not in data]
        if missing:
            raise KeyError(f"{path}: not an Arras LSTM weight file, missing {missing}")
        w = {k: data[k] for k in _KEYS}
        vocab = [str(v) for v in data["vocab"]] if "vocab" in data else None
        if "gate_order" in data and str(data["gate_order"]) not in ("i,g,f,o", "igfo"):
            raise ValueError(f"{path}: unexpected gate_order {data['gate_order']!r} (expected 'i,g,f,o')")
    four_d, e = w["Wxh_Left"].shape
    d, classes = four_d // 4, w["Why_Left"].shape[0]
    if w["Whh_Left"].shape != (4 * d, d) or w["E"].shape[1] != e or w["Why_Right"].shape != (classes, d):
        raise ValueError(f"{path}: inconsistent shapes {({k: v.shape for k, v in w.items()})}")
    model = BiLSTMClassifier(w["E"].shape[0], e, d, classes).to(dtype)
    with torch.no_grad():
        model.embedding.weight.copy_(torch.from_numpy(w["E"]))
        for side, suffix in (("Left", ""), ("Right", "_reverse")):
            getattr(model.lstm, f"weight_ih_l0{suffix}").copy_(torch.from_numpy(_swap_g_f(w[f"Wxh_{side}"])))
            getattr(model.lstm, f"weight_hh_l0{suffix}").copy_(torch.from_numpy(_swap_g_f(w[f"Whh_{side}"])))
            getattr(model.lstm, f"bias_ih_l0{suffix}").copy_(torch.from_numpy(_swap_g_f(w[f"bxh_{side}"])))
            getattr(model.lstm, f"bias_hh_l0{suffix}").copy_(torch.from_numpy(_swap_g_f(w[f"bhh_{side}"])))
        model.classifier.weight.copy_(torch.from_numpy(np.concatenate([w["Why_Left"], w["Why_Right"]], axis=1)))
    return model.eval(), vocab


def save_arras(model: BiLSTMClassifier, path: str | PathLike, vocab: list[str] | None = None) -> None:
    """Write ``model`` in Arras's layout (gate order i, g, f, o), loadable by their code and :func:`load_arras`."""
    lstm = model.lstm
    if not (lstm.bidirectional and lstm.num_layers == 1 and lstm.bias and lstm.proj_size == 0):
        raise ValueError("Arras's layout holds one bidirectional LSTM layer with biases")
    if model.classifier.bias is not None and bool(model.classifier.bias.ne(0).any()):
        raise ValueError("Arras's layout has no output bias; this classifier's bias is non-zero")
    d = lstm.hidden_size

    def arr(t: Tensor) -> np.ndarray:
        return t.detach().cpu().double().numpy()

    out = {"E": arr(model.embedding.weight), "gate_order": np.array("i,g,f,o")}
    for side, suffix in (("Left", ""), ("Right", "_reverse")):
        out[f"Wxh_{side}"] = _swap_g_f(arr(getattr(lstm, f"weight_ih_l0{suffix}")))
        out[f"Whh_{side}"] = _swap_g_f(arr(getattr(lstm, f"weight_hh_l0{suffix}")))
        out[f"bxh_{side}"] = _swap_g_f(arr(getattr(lstm, f"bias_ih_l0{suffix}")))
        out[f"bhh_{side}"] = _swap_g_f(arr(getattr(lstm, f"bias_hh_l0{suffix}")))
    why = arr(model.classifier.weight)
    out["Why_Left"], out["Why_Right"] = why[:, :d], why[:, d:]
    if vocab is not None:
        out["vocab"] = np.array(vocab)
    np.savez(path, **out)
