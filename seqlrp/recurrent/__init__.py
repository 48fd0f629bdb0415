"""LRP for the LSTM's successors: Mamba (selective state spaces), with the LSTM's gate rule.

``import seqlrp`` does not import transformers: the family handlers are imported when a preset composite
canonizes a model (or by :func:`register_families`).

Token ids in: :func:`seqlrp.explain_text` on a family's Hugging Face causal LM (``MambaForCausalLM``, ...) or on
a backbone under :class:`SequenceClassifier` (default composite :class:`RecurrentLRP`; padding rules in
:mod:`seqlrp.recurrent.text`).

>>> import seqlrp
>>> composite = seqlrp.recurrent.MambaLRP(epsilon=1e-6)
"""

from .classifier import SequenceClassifier
from .composites import MambaLRP, RecurrentLRP, register_families
from .ops import OUTPUT_GATE

__all__ = ["OUTPUT_GATE", "MambaLRP", "RecurrentLRP", "SequenceClassifier", "register_families"]
