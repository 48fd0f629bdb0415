"""LSTM and GRU side: unrolled cells with LRP rules, token relevance for any text classifier."""

from .arras import BiLSTMClassifier, load_arras, save_arras
from .classifiers import AttentionRNNClassifier, KimCNN, MaxPoolRNNClassifier
from .composites import ArrasLSTM
from .recurrent import CELL_SUM, GATE_LINEAR, GATE_PRODUCT, RecurrentForward
from .text import PaddingWarning, TextExplanation, explain_text

__all__ = [
    "CELL_SUM",
    "GATE_LINEAR",
    "GATE_PRODUCT",
    "ArrasLSTM",
    "AttentionRNNClassifier",
    "KimCNN",
    "MaxPoolRNNClassifier",
    "PaddingWarning",
    "BiLSTMClassifier",
    "RecurrentForward",
    "TextExplanation",
    "explain_text",
    "load_arras",
    "save_arras",
]
