"""The recurrent families through the text entry point: which family a model holds, its default composite, and
which padding it can be explained with.

:func:`seqlrp.explain_text` on a Hugging Face model (``MambaForCausalLM``, ``RwkvForCausalLM``, ... or a backbone
under a user's head, e.g. :class:`seqlrp.recurrent.SequenceClassifier`) asks :func:`family_of` for the family, takes
:class:`~seqlrp.recurrent.RecurrentLRP` as the default composite for a recurrent family, and refuses padding the
family's transformers forward does not honour (:func:`check_padding`). Nothing here imports transformers: the
family is read from the module path of the model's classes.

Padding. All five families are causal: the output at a position never depends on later positions, so *right*
padding is exact for every family when the explained output is read at each sequence's last real token (a causal
LM's next-token logits, :class:`~seqlrp.recurrent.SequenceClassifier`'s ``pool="last"`` or ``"mean"``). *Left*
padding is exact only where transformers zeroes the padded positions inside the mixer (Mamba, Mamba2: the state
stays 0 through the padding); RWKV, xLSTM and RecurrentGemma's recurrent blocks ignore ``attention_mask``, so a
left-padded sentence would be explained as if its padding were tokens: refused, naming the fix.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: family name -> the transformers module its classes live in
FAMILY_MODULES = {
    "mamba": "transformers.models.mamba.",
    "mamba2": "transformers.models.mamba2.",
    "recurrent_gemma": "transformers.models.recurrent_gemma.",
    "rwkv": "transformers.models.rwkv.",
    "xlstm": "transformers.models.xlstm.",
}
#: families whose transformers forward honours ``attention_mask`` (padded positions zeroed inside the mixers)
MASKED_FAMILIES = frozenset({"mamba", "mamba2"})
#: families whose forward ignores ``attention_mask`` and logs that it does (not passed to them)
MASK_UNUSED = frozenset({"rwkv"})
_NAMES = {"mamba": "Mamba", "mamba2": "Mamba2", "recurrent_gemma": "RecurrentGemma", "rwkv": "RWKV",
          "xlstm": "xLSTM"}


def family_of(model: nn.Module) -> str | None:
    """The recurrent family of the first transformers module in ``model`` that belongs to one (None: none does).

    >>> import torch
    >>> family_of(torch.nn.Linear(2, 2)) is None
    True
    """
    for module in model.modules():
        path = type(module).__module__ + "."
        for family, prefix in FAMILY_MODULES.items():
            if path.startswith(prefix):
                return family
    return None


def padding_side(mask: Tensor) -> str:
    """``"none"`` (no padding), ``"left"``, ``"right"`` or ``"mixed"`` for a ``(B, T)`` 0/1 attention mask.

    A row is right-padded when its ones come first, left-padded when its zeros come first; a batch mixing both,
    or a row with a hole (``1 0 1``), is ``"mixed"``. A row without any real token is a ValueError.

    >>> import torch
    >>> padding_side(torch.tensor([[0, 1, 1], [1, 1, 1]])), padding_side(torch.tensor([[1, 1, 0]]))
    ('left', 'right')
    """
    real = mask.bool()
    empty = (~real.any(1)).nonzero().flatten()
    if len(empty):
        raise ValueError(f"attention_mask row {int(empty[0])} has no real token (all zeros): drop empty sequences "
                         "before explaining")
    if bool(real.all()):
        return "none"
    count = real.sum(1, keepdim=True)
    steps = real.shape[1]
    positions = torch.arange(steps, device=real.device)[None, :]
    right = bool((real == (positions < count)).all())
    left = bool((real == (positions >= steps - count)).all())
    return "right" if right else "left" if left else "mixed"


def check_padding(family: str | None, mask: Tensor) -> None:
    """Refuse padding the family's forward would read as tokens (see the module docstring); None: not recurrent."""
    if family is None:
        return
    side = padding_side(mask)
    name = _NAMES[family]
    if side == "mixed":
        raise ValueError(f"{name}: attention_mask mixes left and right padding or has holes (0 between 1s); a "
                         "recurrent model reads its sequence in order: pad every sentence on one side")
    if side == "left" and family not in MASKED_FAMILIES:
        raise ValueError(f"{name} ignores attention_mask in transformers, so a left-padded sentence would be "
                         "explained with its padding read as tokens (its relevance would depend on its batch): pad "
                         "on the right (tokenizer.padding_side = 'right'), or explain one length per batch")


def last_real(mask: Tensor) -> Tensor:
    """``(B,)``: the position of each sequence's last real token (``mask`` 1), for left and right padding alike.

    >>> import torch
    >>> last_real(torch.tensor([[0, 1, 1], [1, 1, 0]])).tolist()
    [2, 1]
    """
    steps = mask.shape[1]
    return steps - 1 - mask.bool().flip(1).int().argmax(1)
