"""Read and write the weight layout of Arras et al.'s LSTM-LRP code (``LRP_for_LSTM``).

Their bidirectional LSTM keeps ``Wxh_Left (4d, e)``, ``Whh_Left (4d, d)``, ``bxh_Left``, ``bhh_Left (4d,)``,
the same ``_Right`` (the backward LSTM), ``Why_Left``, ``Why_Right (C, d)`` and the embedding ``E (V, e)``,
with the gate blocks in the order **i, g, f, o**; PyTorch's ``nn.LSTM`` uses i, f, g, o. Swapping the
2nd and 3rd blocks maps one onto the other (the permutation is its own inverse).
"""

from __future__ import annotations

import zipfile
from os import PathLike

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..files import atomic_write


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
    try:
        data = np.load(path, allow_pickle=False)
        arrays = None
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                arrays = dict(data)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a NumPy .npz file ({error})") from None
    if arrays is None:
        raise ValueError(f"{path}: not a NumPy .npz file (a single array)")
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: not an Arras LSTM weight file, missing {missing}")
    w = {k: arrays[k] for k in _KEYS}
    vocab = [str(v) for v in arrays["vocab"]] if "vocab" in arrays else None
    order = str(arrays["gate_order"]) if "gate_order" in arrays else None
    if order is not None and order not in ("i,g,f,o", "igfo"):
        raise ValueError(f"{path}: unexpected gate_order {order!r} (expected 'i,g,f,o')")
    _check_arras_shapes(path, w, vocab)
    four_d, e = w["Wxh_Left"].shape
    d, classes = four_d // 4, w["Why_Left"].shape[0]
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


def _check_arras_shapes(path, w: dict[str, np.ndarray], vocab: list[str] | None) -> None:
    """Every array of an Arras file consistent with ``Wxh_Left (4d, e)``, ``Why_Left (C, d)`` and ``E (V, e)``."""
    bad = [k for k, v in w.items() if v.dtype.kind != "f" or not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: arrays {bad} are not finite floating-point numbers")
    if w["Wxh_Left"].ndim != 2 or w["Wxh_Left"].shape[0] % 4 or w["E"].ndim != 2 or w["Why_Left"].ndim != 2:
        raise ValueError(f"{path}: Wxh_Left must be (4d, e), E (V, e) and Why_Left (C, d); got "
                         f"{w['Wxh_Left'].shape}, {w['E'].shape}, {w['Why_Left'].shape}")
    four_d, e = w["Wxh_Left"].shape
    d, classes = four_d // 4, w["Why_Left"].shape[0]
    expected = {"E": (w["E"].shape[0], e), "Why_Left": (classes, d), "Why_Right": (classes, d)}
    for side in ("Left", "Right"):
        expected.update({f"Wxh_{side}": (4 * d, e), f"Whh_{side}": (4 * d, d), f"bxh_{side}": (4 * d,),
                         f"bhh_{side}": (4 * d,)})
    wrong = {k: (w[k].shape, shape) for k, shape in expected.items() if w[k].shape != shape}
    if wrong:
        raise ValueError(f"{path}: inconsistent shapes for d={d}, e={e}, C={classes}: "
                         + ", ".join(f"{k} is {got}, expected {want}" for k, (got, want) in wrong.items()))
    if vocab is not None and len(vocab) != w["E"].shape[0]:
        raise ValueError(f"{path}: the vocabulary has {len(vocab)} entries but E has {w['E'].shape[0]} rows")


def save_arras(model: BiLSTMClassifier, path: str | PathLike, vocab: list[str] | None = None) -> None:
    """Write ``model`` in Arras's layout (gate order i, g, f, o), loadable by their code and :func:`load_arras`.

    The file is written atomically at exactly ``path`` (NumPy's ``savez`` would append ``.npz``).
    """
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
        if len(vocab) != out["E"].shape[0]:
            raise ValueError(f"the vocabulary has {len(vocab)} entries but the embedding {out['E'].shape[0]} rows")
        out["vocab"] = np.array(vocab)
    atomic_write(path, lambda file: np.savez(file, **out))  # (exactly at ``path``: no ".npz" appended)
