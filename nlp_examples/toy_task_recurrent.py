"""The toy task of Arras et al. 2019 for the LSTM's successors: Mamba, Mamba2, RecurrentGemma (RG-LRU), RWKV, xLSTM.

Same data as ``toy_task.py`` (random digits, two marked; label: marked sum >= 9). A small model of each
family is trained from scratch (token embedding -> Hugging Face backbone via ``inputs_embeds`` -> linear
head on the last real token; right padding, exact for these causal models), plus the LSTM for reference.
Every test sequence is explained, and we report how often the two tokens with the largest |relevance| are
exactly the two marked ones: LRP (``seqlrp.recurrent`` presets; both rules for the product of two signals,
MambaLRP's half rule and signal-takes-all),
gradient x input, gradient (sensitivity ``‖∂f/∂x_t‖²``) and random.

    python nlp_examples/toy_task_recurrent.py [--quick] [--families mamba,rwkv] [--out out/toy_recurrent]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch
from torch import nn

import seqlrp

HERE = Path(__file__).resolve().parent


def _toy():
    """``toy_task.py`` (its data, LSTM classifier, training loop and top-2 score)."""
    if "toy_task" not in sys.modules:
        spec = importlib.util.spec_from_file_location("toy_task", HERE / "toy_task.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["toy_task"] = module
        spec.loader.exec_module(module)
    return sys.modules["toy_task"]


def backbone(family: str, hidden: int) -> nn.Module:
    """A small randomly initialized backbone of ``family`` (2 layers)."""
    import transformers as hf

    if family == "mamba":
        return hf.MambaModel(hf.MambaConfig(vocab_size=4, hidden_size=hidden, state_size=8, num_hidden_layers=2,
                                            intermediate_size=2 * hidden, conv_kernel=4, use_cache=False))
    if family == "mamba2":
        return hf.Mamba2Model(hf.Mamba2Config(vocab_size=4, hidden_size=hidden, state_size=8, num_hidden_layers=2,
                                              expand=2, num_heads=4, head_dim=hidden // 2, n_groups=1,
                                              conv_kernel=4, chunk_size=16, use_cache=False))
    if family == "recurrent_gemma":
        return hf.RecurrentGemmaModel(hf.RecurrentGemmaConfig(
            vocab_size=4, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
            num_attention_heads=2, lru_width=hidden, attention_window_size=16, conv1d_width=4,
            block_types=["recurrent"], use_cache=False))
    if family == "rwkv":
        return hf.RwkvModel(hf.RwkvConfig(vocab_size=4, hidden_size=hidden, num_hidden_layers=2,
                                          attention_hidden_size=hidden, intermediate_size=2 * hidden,
                                          context_length=16, use_cache=False))
    if family == "xlstm":
        return hf.xLSTMModel(hf.xLSTMConfig(vocab_size=4, hidden_size=hidden, embedding_dim=hidden, num_hidden_layers=2,
                                            num_heads=2, qk_dim_factor=1.0, v_dim_factor=1.0, use_cache=False,
                                            chunk_size=4))
    raise ValueError(f"unknown family {family!r}")


class EmbeddingHead(nn.Module):
    """Input embeddings ``(B, T, E)`` -> backbone -> Linear on the real tokens' states (lengths: ``self.lengths``).

    Parameters
    ----------
    backbone : nn.Module
        A Hugging Face backbone taking ``inputs_embeds``.
    hidden : int
        Its hidden size.
    pooling : {"last", "mean"}
        The head reads each sequence's last real token, or the mean of its real tokens' states (exact with right
        padding: the backbones are causal).
    """

    def __init__(self, backbone: nn.Module, hidden: int, pooling: str = "last"):
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        self.backbone, self.head, self.pooling = backbone, nn.Linear(hidden, 2), pooling
        self.lengths: torch.Tensor | None = None

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(embeds.shape[1])[None, :] < self.lengths[:, None]
        kwargs = {"attention_mask": mask.long()} if isinstance(self.backbone, _masked_types()) else {}
        h = self.backbone(inputs_embeds=embeds, use_cache=False, **kwargs).last_hidden_state
        if self.pooling == "mean":
            return self.head((h * mask[..., None]).sum(1) / self.lengths[:, None])
        return self.head(h[torch.arange(h.shape[0]), self.lengths - 1])


def _masked_types():
    from transformers import Mamba2Model, MambaModel

    return MambaModel, Mamba2Model


class TokenClassifier(nn.Module):
    """``forward(ids, lengths)``: embedding -> :class:`EmbeddingHead` (trained end to end; ``pooling`` as there)."""

    def __init__(self, family: str, vocab: int, hidden: int = 32, pooling: str = "last"):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.body = EmbeddingHead(backbone(family, hidden), hidden, pooling)

    def forward(self, ids, lengths):
        self.body.lengths = lengths
        return self.body(self.embedding(ids))


def token_scores(model: TokenClassifier, ids, lengths, targets, method: str, composite=None) -> torch.Tensor:
    """``(B, T)`` token relevance of ``method`` ("lrp", "gradient x input", "gradient")."""
    embeds = model.embedding(ids).detach()
    model.body.lengths = lengths
    if method == "lrp":
        return seqlrp.explain(model.body, embeds, targets, composite=composite).relevance.sum(-1)
    x = embeds.requires_grad_(True)
    logit = model.body(x).gather(1, targets[:, None]).sum()
    (grad,) = torch.autograd.grad(logit, x)
    return (grad * x).sum(-1).detach() if method == "gradient x input" else grad.pow(2).sum(-1)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, one epoch (CI)")
    parser.add_argument("--families", default="lstm,mamba,mamba2,recurrent_gemma,rwkv,xlstm")
    parser.add_argument("--out", default="out/toy_recurrent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=None, help="training sequences (default 6000, quick 300)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 10, quick 1)")
    args = parser.parse_args(argv)
    toy = _toy()
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    n_train, n_test, epochs = (300, 40, 1) if args.quick else (6000, 1000, 10)
    n_train, epochs = args.train or n_train, args.epochs or epochs
    ids, lengths, labels, _ = toy.make_data(n_train, generator)
    test_ids, test_lengths, test_labels, test_marks = toy.make_data(n_test, generator)
    results, start = {}, time.perf_counter()
    for family in args.families.split(","):
        t0 = time.perf_counter()
        if family == "lstm":
            model = toy.train(toy.Classifier(False), ids, lengths, labels, epochs, generator)
            methods = {"LRP": lambda m, i, t, n: seqlrp.explain_text(m, i, t, lengths=n).token_relevance,
                       "gradient x input": lambda m, i, t, n: seqlrp.baselines.text_gradient_x_input(
                           m, i, t, lengths=n).token_relevance,
                       "gradient": lambda m, i, t, n: seqlrp.baselines.text_gradient(
                           m, i, t, lengths=n).token_relevance}
        else:
            model = toy.train(TokenClassifier(family, toy.VOCAB), ids, lengths, labels, epochs, generator)
            rules = {"LRP": seqlrp.recurrent.RecurrentLRP(epsilon=1e-6)}
            if family != "rwkv":  # (RWKV has no product of two signals: its receptances are sigmoid gates)
                rules = {"LRP (half rule)": seqlrp.recurrent.RecurrentLRP(epsilon=1e-6, output_gate="half_product"),
                         "LRP (signal-takes-all)": seqlrp.recurrent.RecurrentLRP(epsilon=1e-6,
                                                                                  output_gate="signal_takes_all")}
            methods = {name: (lambda m, i, t, n, c=c: token_scores(m, i, n, t, "lrp", c)) for name, c in rules.items()}
            methods.update({name: (lambda m, i, t, n, k=name: token_scores(m, i, n, t, k))
                            for name in ("gradient x input", "gradient")})
        with torch.no_grad():
            accuracy = float((model(test_ids, test_lengths).argmax(1) == test_labels).double().mean())
        top2 = {name: toy.top2_hit(fn(model, test_ids, test_labels, test_lengths), test_lengths, test_marks)
                for name, fn in methods.items()}
        top2["random"] = toy.top2_hit(torch.rand(test_ids.shape, generator=generator), test_lengths, test_marks)
        results[family] = {"accuracy": accuracy, "top2": top2, "seconds": time.perf_counter() - t0}
        print(f"{family}: accuracy {accuracy:.3f} ({results[family]['seconds']:.0f} s)", flush=True)
        for name, hit in top2.items():
            print(f"  {name:24s} top-2 = marked: {hit:.3f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| family | test accuracy | LRP (half rule / signal-takes-all) | gradient x input | gradient | random |",
             "|---|---|---|---|---|---|"]
    for family, r in results.items():
        lrp = " / ".join(f"{v:.3f}" for k, v in r["top2"].items() if k.startswith("LRP"))
        lines.append(f"| {family} | {r['accuracy']:.3f} | {lrp} | {r['top2']['gradient x input']:.3f} | "
                     f"{r['top2']['gradient']:.3f} | {r['top2']['random']:.3f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print(f"toy task, recurrent families ({'quick' if args.quick else 'full'}: {n_train} train / {n_test} test, "
          f"{epochs} epochs, {time.perf_counter() - start:.0f} s)\n" + "\n".join(lines))
    return results


if __name__ == "__main__":
    main()
