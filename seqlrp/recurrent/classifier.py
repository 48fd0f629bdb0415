r""":class:`SequenceClassifier`: a Hugging Face backbone (Mamba, Mamba2, RecurrentGemma, RWKV, xLSTM, or a
transformer encoder/decoder) under a linear classification head, trainable and explained by
:func:`seqlrp.explain_text`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .text import MASKED_FAMILIES, check_padding, family_of, last_real

POOLS = ("last", "mean")


class SequenceClassifier(nn.Module):
    r"""Token ids in, class logits out: ``head(pool(backbone(input_ids, attention_mask).last_hidden_state))``.

    .. math::

        h = \mathrm{backbone}(x)_{1..T} \in \mathbb{R}^{T \times H}, \qquad
        \mathrm{logits} = W\,\mathrm{pool}(h) + b, \qquad
        \mathrm{pool}(h) = \begin{cases} h_{t^*} & \text{last: } t^* = \text{the last real token} \\
        \sum_t m_t h_t / \sum_t m_t & \text{mean over the real tokens (mask } m\text{)} \end{cases}

    Both pools read only real tokens, so with right padding (or left padding where the backbone honours the
    mask: Mamba, Mamba2, transformers) a sentence's logits and relevance do not depend on its batch. A
    recurrent backbone that ignores the mask (RWKV, xLSTM, RecurrentGemma) refuses a left-padded batch
    (:func:`seqlrp.recurrent.text.check_padding`). A recurrent backbone is called with ``use_cache=False``.

    Parameters
    ----------
    backbone : nn.Module
        A Hugging Face base model (``MambaModel``, ``RwkvModel``, ``BertModel``, ...) returning
        ``.last_hidden_state`` ``(B, T, H)``.
    num_classes : int
        Output classes ``C``.
    pool : {"last", "mean"}
        The last real token (a causal model's summary of the sentence) or the mean over the real tokens.
    hidden : int, optional
        ``H`` (default ``backbone.config.hidden_size``).
    bias : bool
        Whether the head has a bias (its share of the relevance is absorbed by the ε rule).

    Examples
    --------
    >>> import torch, seqlrp
    >>> from transformers import MambaConfig, MambaModel                       # doctest: +SKIP
    >>> backbone = MambaModel(MambaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2))  # doctest: +SKIP
    >>> model = seqlrp.recurrent.SequenceClassifier(backbone, 2).eval()    # doctest: +SKIP
    >>> seqlrp.explain_text(model, torch.tensor([[3, 14, 15]])).relevance.shape  # doctest: +SKIP
    torch.Size([1, 3])
    """

    def __init__(self, backbone: nn.Module, num_classes: int, pool: str = "last", *, hidden: int | None = None,
                 bias: bool = True):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if not callable(getattr(backbone, "get_input_embeddings", None)):
            raise TypeError(f"backbone must be a Hugging Face base model (with get_input_embeddings), got "
                            f"{type(backbone).__name__}")
        if hidden is None:
            hidden = getattr(getattr(backbone, "config", None), "hidden_size", None)
            if hidden is None:
                raise ValueError(f"{type(backbone).__name__} has no config.hidden_size: pass hidden=")
        self.backbone, self.pool = backbone, pool
        self.head = nn.Linear(hidden, num_classes, bias=bias)
        self.family = family_of(backbone)

    def get_input_embeddings(self) -> nn.Module:
        """The backbone's token embedding (what :func:`seqlrp.explain_text` reads relevance at)."""
        return self.backbone.get_input_embeddings()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        options: dict = {}
        if self.family is not None:
            options["use_cache"] = False
            if attention_mask is not None:
                check_padding(self.family, attention_mask)
        if attention_mask is not None and (self.family is None or self.family in MASKED_FAMILIES):
            options["attention_mask"] = attention_mask
        h = self.backbone(input_ids=input_ids, **options).last_hidden_state  # (B, T, H)
        if self.pool == "last":
            if attention_mask is None:
                return self.head(h[:, -1])
            return self.head(h[torch.arange(h.shape[0], device=h.device), last_real(attention_mask)])
        # (one op for every batch, masked or not: a sum over the real tokens, then / their count, so the ε of the
        # sum's rule sees the same total for a sentence alone and in a padded batch)
        real = (torch.ones(h.shape[:2], dtype=torch.bool, device=h.device) if attention_mask is None
                else attention_mask.bool())[..., None]
        summed = torch.where(real, h, torch.zeros((), dtype=h.dtype, device=h.device)).sum(1)
        return self.head(summed / real.sum(1).to(h.dtype))
