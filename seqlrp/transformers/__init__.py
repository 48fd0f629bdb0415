"""Transformers: AttnLRP and CP-LRP presets, and token / word relevance for Hugging Face text models.

>>> import seqlrp.transformers as T
>>> T.AttnLRP(epsilon=1e-6)
AttnLRP(epsilon=1e-06)

The presets need nothing beyond torch; :func:`explain_transformer` needs the ``hf`` extra
(``pip install seqlrp[hf]``: transformers, tokenizers, safetensors).
"""

from .composites import CPLRP, AttnLRP, TransformerComposite
from .text import TransformerExplanation, Word, explain_transformer, is_hf_batch, is_hf_model

__all__ = ["CPLRP", "AttnLRP", "TransformerComposite", "TransformerExplanation", "Word", "explain_transformer",
           "is_hf_batch", "is_hf_model"]
