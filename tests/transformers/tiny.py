"""Tiny random-weight Hugging Face classifiers (hidden 16, 2 layers, 2 heads) for the transformer tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

tf = pytest.importorskip("transformers")

_SMALL = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, vocab_size=64,
              max_position_embeddings=64, num_labels=3)
#: name -> (config class, model class, config options)
ARCHITECTURES = {
    "bert": ("BertConfig", "BertForSequenceClassification", {}),
    "distilbert": ("DistilBertConfig", "DistilBertForSequenceClassification",
                   dict(dim=16, n_layers=2, n_heads=2, hidden_dim=32, vocab_size=64, max_position_embeddings=64,
                        num_labels=3)),
    "roberta": ("RobertaConfig", "RobertaForSequenceClassification", dict(pad_token_id=1)),
    "deberta-v2": ("DebertaV2Config", "DebertaV2ForSequenceClassification",
                   dict(relative_attention=True, position_buckets=8, pos_att_type=["p2c", "c2p"],
                        pooler_hidden_size=16)),
    "electra": ("ElectraConfig", "ElectraForSequenceClassification", dict(embedding_size=16)),
    "gpt2": ("GPT2Config", "GPT2ForSequenceClassification",
             dict(n_embd=16, n_layer=2, n_head=2, n_positions=64, vocab_size=64, num_labels=3, pad_token_id=0,
                  bos_token_id=1, eos_token_id=2)),
    "llama": ("LlamaConfig", "LlamaForSequenceClassification", dict(num_key_value_heads=1, pad_token_id=0, head_dim=8)),
    "qwen2": ("Qwen2Config", "Qwen2ForSequenceClassification", dict(num_key_value_heads=1, pad_token_id=0)),
    # Gemma's RMSNorm scales by (1 + weight); Gemma 2 soft-caps the attention scores (tanh), Gemma 3 normalizes q, k
    "gemma": ("GemmaConfig", "GemmaForSequenceClassification", dict(num_key_value_heads=1, pad_token_id=0, head_dim=8)),
    "gemma2": ("Gemma2Config", "Gemma2ForSequenceClassification",
               dict(num_key_value_heads=1, pad_token_id=0, head_dim=8)),
    "gemma3": ("Gemma3TextConfig", "Gemma3TextForSequenceClassification",
               dict(num_key_value_heads=1, pad_token_id=0, head_dim=8)),
    "modernbert": ("ModernBertConfig", "ModernBertForSequenceClassification",
                   dict(global_attn_every_n_layers=1, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
                        sep_token_id=2)),
}
#: architectures Hugging Face itself refuses to run with sdpa (Gemma 2: soft-capping), or whose sdpa and eager outputs
#: differ in Hugging Face itself beyond the test's 1e-7 (Gemma 3: 1e-7 of the logits, float64)
NO_SDPA = {"deberta-v2", "gemma2", "gemma3"}


def tiny(name: str, attention: str = "eager", seed: int = 0, dtype=torch.float64) -> nn.Module:
    config_cls, model_cls, extra = ARCHITECTURES[name]
    options = {} if name in ("distilbert", "gpt2") else dict(_SMALL)
    options.update(extra)
    torch.manual_seed(seed)
    config = getattr(tf, config_cls)(**options, attn_implementation=attention)
    return getattr(tf, model_cls)(config).eval().to(dtype)


class Embeds(nn.Module):
    """``model(inputs_embeds=x).logits``: a Hugging Face model as a function of its input embeddings."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(inputs_embeds=x).logits


#: the word-piece vocabulary of :func:`tiny_tokenizer` (ids below the tiny models' 64)
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "good", "bad", "film", "movie", "plot",
              "wonder", "##ful", "un", "##forget", "##table", ",", ".", "!", "actors", "shine", "drags", "but", "is",
              "not", "great", "awful", "very", "<", ">", "script", "and", "##s", "story", "cafe"]


#: decoders: their tokenizers give no token_type_ids (GPT-2 would look them up in its word embedding)
DECODERS = ("gpt2", "llama", "qwen2")


def tiny_tokenizer(folder, vocabulary=VOCABULARY, token_types: bool = True):
    """A BERT word-piece tokenizer over ``vocabulary``, written to ``folder`` (no hub access needed); without
    ``token_types`` it gives only ``input_ids`` and ``attention_mask`` (a decoder's tokenizer)."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    names = ["input_ids", "token_type_ids", "attention_mask"] if token_types else ["input_ids", "attention_mask"]
    tokenizer = tf.BertTokenizer(str(folder / "vocab.txt"), model_max_length=64, model_input_names=names)
    tokenizer.save_pretrained(folder)
    return tokenizer


def save_tiny(folder, name: str = "bert", seed: int = 0, **options):
    """A tiny random classifier of ``name`` and :func:`tiny_tokenizer`, saved together in ``folder`` (what
    ``--hf-model DIR`` reads); returns ``(model, tokenizer)``."""
    model = tiny(name, seed=seed, **options)
    model.save_pretrained(folder)
    return model, tiny_tokenizer(folder, token_types=name not in DECODERS)
