"""Tiny random models of the recurrent families, wrapped as classifiers over input embeddings."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

import seqlrp


def explain_strict(model: nn.Module, x: Tensor, target=None, composite=None):
    """``seqlrp.explain`` with a CoverageWarning turned into an error: every op of a family must have a rule."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        return seqlrp.explain(model, x, target, composite=composite)


class EmbeddingClassifier(nn.Module):
    """``head(backbone(inputs_embeds=e).last_hidden_state)`` at the last (or each sequence's last real) token.

    ``mask`` (a constant ``(B, T)`` attention mask, or None) is passed to the backbone; with ``pool="last_real"``
    the head reads each sequence's last unpadded position (right padding).
    """

    def __init__(self, backbone: nn.Module, hidden: int, classes: int = 3, bias: bool = True, pool: str = "last"):
        super().__init__()
        self.backbone, self.head, self.pool = backbone, nn.Linear(hidden, classes, bias=bias), pool
        self.mask: Tensor | None = None

    def forward(self, embeds: Tensor) -> Tensor:
        h = self.backbone(inputs_embeds=embeds, attention_mask=self.mask, use_cache=False).last_hidden_state
        if self.pool == "last_real" and self.mask is not None:
            last = self.mask.long().sum(1) - 1
            return self.head(h[torch.arange(h.shape[0]), last])
        return self.head(h[:, -1])


def _mamba_config(conv_bias: bool = True):
    from transformers import MambaConfig

    return MambaConfig(vocab_size=16, hidden_size=8, state_size=4, num_hidden_layers=2, intermediate_size=12,
                       conv_kernel=3, time_step_rank=2, residual_in_fp32=False, use_cache=False,
                       use_conv_bias=conv_bias)


def _mamba_init(backbone: nn.Module) -> None:
    with torch.no_grad():  # (non-trivial values: the default init keeps D = 1, A_log = log(1..N))
        for block in backbone.layers:
            block.mixer.D.normal_()
            block.mixer.A_log.add_(0.3 * torch.randn_like(block.mixer.A_log))
            block.norm.weight.normal_(1.0, 0.2)
            block.mixer.out_proj.weight.normal_(0.0, 0.5)
            block.mixer.dt_proj.bias.normal_()  # (Δ ~ 0.7: the scan mixes the tokens, not only the residual)


def _recurrent_gemma_config():
    from transformers import RecurrentGemmaConfig

    return RecurrentGemmaConfig(num_hidden_layers=2, vocab_size=16, hidden_size=8, intermediate_size=16,
                                num_attention_heads=2, lru_width=8, attention_window_size=16, conv1d_width=3,
                                block_types=["recurrent"], use_cache=False)


def _recurrent_gemma_init(backbone: nn.Module) -> None:
    with torch.no_grad():
        for layer in backbone.layers:
            layer.temporal_pre_norm.weight.normal_(0.0, 0.2)
            layer.temporal_block.rg_lru.recurrent_param.normal_(0.0, 0.5)


def _rwkv_config():
    from transformers import RwkvConfig

    return RwkvConfig(vocab_size=16, hidden_size=8, num_hidden_layers=2, attention_hidden_size=8,
                      intermediate_size=16, context_length=32, use_cache=False)


def _rwkv_init(backbone: nn.Module) -> None:
    with torch.no_grad():
        for block in backbone.blocks:
            for name in ("time_mix_key", "time_mix_value", "time_mix_receptance"):
                for part in (block.attention, block.feed_forward):
                    if hasattr(part, name):
                        getattr(part, name).uniform_(0.2, 0.8)
            block.attention.time_decay.normal_(0.0, 0.5)
            block.attention.time_first.normal_(0.0, 0.5)
            block.attention.output.weight.normal_(0.0, 0.3)


def _xlstm_config():
    from transformers import xLSTMConfig

    return xLSTMConfig(vocab_size=16, hidden_size=8, embedding_dim=8, num_hidden_layers=2, num_heads=2,
                       qk_dim_factor=1.0, v_dim_factor=1.0, use_cache=False, chunk_size=4)


def _xlstm_init(backbone: nn.Module) -> None:
    with torch.no_grad():
        for block in backbone.blocks:
            block.mlstm_layer.igate_preact.bias.normal_()
            block.mlstm_layer.fgate_preact.bias.normal_(1.0, 1.0)
            block.mlstm_layer.multihead_norm.weight.normal_(1.0, 0.2)


def _mamba2_config():
    from transformers import Mamba2Config

    return Mamba2Config(vocab_size=16, hidden_size=8, state_size=4, num_hidden_layers=2, expand=2, num_heads=4,
                        head_dim=4, n_groups=2, conv_kernel=3, chunk_size=4, residual_in_fp32=False,
                        use_cache=False, use_conv_bias=True)


def _mamba2_init(backbone: nn.Module) -> None:
    with torch.no_grad():
        for block in backbone.layers:
            block.mixer.dt_bias.normal_()
            block.mixer.D.normal_()
            block.mixer.norm.weight.normal_(1.0, 0.2)
            block.mixer.out_proj.weight.normal_(0.0, 0.5)


#: family -> (config builder, base model class, causal LM class, init of the base model's non-trivial values)
FAMILIES = {
    "mamba": (_mamba_config, "MambaModel", "MambaForCausalLM", _mamba_init),
    "mamba2": (_mamba2_config, "Mamba2Model", "Mamba2ForCausalLM", _mamba2_init),
    "recurrent_gemma": (_recurrent_gemma_config, "RecurrentGemmaModel", "RecurrentGemmaForCausalLM",
                        _recurrent_gemma_init),
    "rwkv": (_rwkv_config, "RwkvModel", "RwkvForCausalLM", _rwkv_init),
    "xlstm": (_xlstm_config, "xLSTMModel", "xLSTMForCausalLM", _xlstm_init),
}


def tiny_backbone(family: str, seed: int = 0, **config) -> nn.Module:
    """The family's tiny base model (vocabulary 16, hidden 8, 2 layers), non-trivial values, float64, eval."""
    import transformers

    make, base, _, init = FAMILIES[family]
    torch.manual_seed(seed)
    backbone = getattr(transformers, base)(make(**config))
    init(backbone)
    return backbone.eval().double()


def tiny_lm(family: str, seed: int = 0) -> nn.Module:
    """The family's tiny causal LM (``...ForCausalLM``: logits ``(B, T, 16)``), float64, eval."""
    import transformers

    make, _, lm, init = FAMILIES[family]
    torch.manual_seed(seed)
    model = getattr(transformers, lm)(make())
    init(model.base_model)
    return model.eval().double()


def tiny_classifier(family: str, pool: str = "last", seed: int = 0, classes: int = 3) -> nn.Module:
    """``seqlrp.recurrent.SequenceClassifier`` over the family's tiny backbone, float64, eval."""
    backbone = tiny_backbone(family, seed)
    torch.manual_seed(seed + 1)
    return seqlrp.recurrent.SequenceClassifier(backbone, classes, pool=pool).double().eval()


def tiny_mamba(seed: int = 0, conv_bias: bool = True, head_bias: bool = True, pool: str = "last") -> nn.Module:
    return EmbeddingClassifier(tiny_backbone("mamba", seed, conv_bias=conv_bias), 8, bias=head_bias,
                               pool=pool).eval().double()


def tiny_recurrent_gemma(seed: int = 0, pool: str = "last") -> nn.Module:
    return EmbeddingClassifier(tiny_backbone("recurrent_gemma", seed), 8, pool=pool).eval().double()


def tiny_rwkv(seed: int = 0, pool: str = "last") -> nn.Module:
    return EmbeddingClassifier(tiny_backbone("rwkv", seed), 8, pool=pool).eval().double()


def tiny_xlstm(seed: int = 0, pool: str = "last") -> nn.Module:
    return EmbeddingClassifier(tiny_backbone("xlstm", seed), 8, pool=pool).eval().double()


def tiny_mamba2(seed: int = 0, pool: str = "last") -> nn.Module:
    return EmbeddingClassifier(tiny_backbone("mamba2", seed), 8, pool=pool).eval().double()
