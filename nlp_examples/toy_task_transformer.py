"""The toy task of Arras et al. 2019 for a small transformer trained from scratch, explained with AttnLRP and CP-LRP.

Same data as ``toy_task.py`` (random digits, two marked; label: marked sum >= 9; its generator, training loop and
top-2 score are shared, not copied). The model is built from Hugging Face's configs and randomly initialized: a tiny
BERT-style encoder (``BertForSequenceClassification``: hidden 32, 2 heads, eager attention) or, with
``--arch llama``, a Llama-style decoder (``LlamaForSequenceClassification``). Each sequence is wrapped as
``[CLS] digits [SEP]`` by ``sst2_transformer.CoreModel`` and classified from [CLS] (BERT: pooler + linear head) or
from the last real token, [SEP] (Llama). Every test sequence is explained (target: the true class), and we report
how often the two tokens with the largest |relevance| are exactly the two marked ones for AttnLRP and CP-LRP
(``seqlrp.transformers`` presets; the token embeddings' share of the relevance, position and token-type embeddings
reported apart), gradient x input and gradient (L2 norm) on the token embeddings, attention rollout from [CLS]
(BERT only; ``sst2_transformer.explainers``), and random relevance; per seed and the mean over seeds.

    python nlp_examples/toy_task_transformer.py [--quick] [--seeds 0,1,2] [--layers 2] [--arch bert|llama]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path

import torch

import seqlrp
from seqlrp.transformers import CPLRP, AttnLRP, explain_transformer

HERE = Path(__file__).resolve().parent


def _load(name: str):
    """The example ``nlp_examples/<name>.py`` as a module (loaded once)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


ARCHITECTURES = ("bert", "llama")


def build(vocab: int, pad_id: int, hidden: int = 32, layers: int = 2, heads: int = 2, dropout: float = 0.0,
          arch: str = "bert"):
    """A randomly initialized tiny classifier (2 classes, eager attention) from Hugging Face's configs.

    Parameters
    ----------
    vocab : int
        Vocabulary size (the task's tokens and [CLS], [SEP]).
    pad_id : int
        The padding id (its embedding row is kept at zero).
    hidden, layers, heads : int
        Hidden size, encoder layers, attention heads; the feed-forward is ``2 * hidden`` wide.
    dropout : float
        Hidden and attention dropout while training (BERT; the Llama config has none).
    arch : {"bert", "llama"}
        ``BertForSequenceClassification`` (post-LN encoder, learned positions, GELU feed-forward, [CLS] + pooler head)
        or ``LlamaForSequenceClassification`` (pre-RMSNorm causal decoder, rotary positions, SwiGLU feed-forward,
        head on the last real token: [SEP] here).
    """
    import transformers as hf

    if arch == "llama":
        return hf.LlamaForSequenceClassification(hf.LlamaConfig(
            vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=32, num_labels=2,
            pad_token_id=pad_id, attn_implementation="eager"))
    if arch != "bert":
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    config = hf.BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=2 * hidden, max_position_embeddings=32, type_vocab_size=1, num_labels=2,
                           pad_token_id=pad_id, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                           attn_implementation="eager")
    return hf.BertForSequenceClassification(config)


def embedding_gradient(core, ids: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor):
    """The token embeddings ``(B, T + 2, H)`` of ``core.batch(ids, lengths)`` and the gradient of the target logit.

    The model runs on its ``input_ids`` (the embedding layer's output is swapped for a leaf by a forward hook), not on
    ``inputs_embeds``: a last-token head (Llama) finds the last real token from the ids, and from embeddings would
    read the last column, padding included.
    """
    batch, store = core.batch(ids, lengths), {}

    def leaf(module, args, output):
        store["x"] = output.detach().requires_grad_(True)
        return store["x"]

    handle = core.model.get_input_embeddings().register_forward_hook(leaf)
    try:
        logits = core.model(**batch).logits
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), store["x"])
    return store["x"].detach(), grad


def methods(core, lengths: torch.Tensor, generator: torch.Generator, rollout: bool = True) -> dict:
    """``name -> explain(core, ids, target) -> (B, T)`` relevance of the task's tokens.

    AttnLRP and CP-LRP turn a ``CoverageWarning`` (an op without a rule) into an error: the presets must cover the
    model completely. Gradient x input and gradient (L2 norm) on the token embeddings: :func:`embedding_gradient`.
    Attention rollout (from [CLS]; ``rollout=False`` leaves it out, for a decoder whose head reads the last token):
    ``sst2_transformer.explainers``.
    """
    shared = _load("sst2_transformer").explainers(core, lengths, ig_steps=1)

    def lrp(composite):
        def explain(_, ids, target):
            with warnings.catch_warnings():
                warnings.simplefilter("error", seqlrp.CoverageWarning)
                result = explain_transformer(core.model, core.batch(ids, lengths), target, composite=composite)
            return result.relevance[:, 1:ids.shape[1] + 1]
        return explain

    def gradient_x_input(_, ids, target):
        x, grad = embedding_gradient(core, ids, lengths, target)
        return (x * grad).sum(-1)[:, 1:ids.shape[1] + 1]

    def gradient(_, ids, target):
        return embedding_gradient(core, ids, lengths, target)[1].norm(dim=-1)[:, 1:ids.shape[1] + 1]

    found = {"AttnLRP": lrp(AttnLRP()), "CP-LRP": lrp(CPLRP()), "gradient x input": gradient_x_input,
             "gradient (L2)": gradient}
    if rollout:
        found["attention rollout"] = shared["attention rollout"]
    found["random"] = lambda _, ids, target: torch.rand(ids.shape, generator=generator)
    return found


def run(seed: int, n_train: int, n_test: int, epochs: int, hidden: int, layers: int, arch: str = "bert") -> dict:
    """Data, training and scores of one seed (data and initialization both follow ``seed``, as in ``toy_task.py``)."""
    toy, sst2 = _load("toy_task"), _load("sst2_transformer")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ids, lengths, labels, _ = toy.make_data(n_train, generator)
    test_ids, test_lengths, test_labels, test_marks = toy.make_data(n_test, generator)
    start = time.perf_counter()
    cls_id, sep_id = toy.VOCAB, toy.VOCAB + 1
    model = build(toy.VOCAB + 2, toy.PAD, hidden=hidden, layers=layers, arch=arch)
    core = sst2.CoreModel(model, cls_id, sep_id, toy.PAD)
    toy.train(core, ids, lengths, labels, epochs, generator)
    train_seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = float((core(test_ids, test_lengths).argmax(1) == test_labels).double().mean())
    top2 = {name: toy.top2_hit(explain(core, test_ids, test_labels), test_lengths, test_marks)
            for name, explain in methods(core, test_lengths, generator, rollout=arch == "bert").items()}
    # where AttnLRP's relevance goes: the token embeddings (ranked above), positions, token types
    full = explain_transformer(core.model, core.batch(test_ids, test_lengths), test_labels)
    shares = {"tokens": float(full.relevance.sum())} | {k: float(v.sum()) for k, v in full.embedding_shares.items()}
    total = sum(shares.values())
    shares = {k: v / total for k, v in shares.items()}
    return {"seed": seed, "accuracy": accuracy, "top2": top2, "attnlrp_shares": shares,
            "coverage_complete": not full.coverage.unruled, "seconds": time.perf_counter() - start,
            "train_seconds": train_seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, few epochs (CI)")
    parser.add_argument("--out", default="out/toy_transformer")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; each trains its own model on its own data")
    parser.add_argument("--train", type=int, default=None, help="training sequences (default 4000, quick 1500)")
    parser.add_argument("--test", type=int, default=None, help="test sequences (default 1000, quick 200)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 8, quick 6)")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--arch", choices=ARCHITECTURES, default="bert")
    args = parser.parse_args(argv)
    n_train, n_test, epochs = (1500, 200, 6) if args.quick else (4000, 1000, 8)
    n_train, n_test, epochs = args.train or n_train, args.test or n_test, args.epochs or epochs
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    print(f"toy task, transformer ({'quick' if args.quick else 'full'}: {args.arch}, {n_train} train / {n_test} test, "
          f"{epochs} epochs, hidden {args.hidden}, {args.layers} layer(s))", flush=True)
    runs = []
    for seed in seeds:
        r = run(seed, n_train, n_test, epochs, args.hidden, args.layers, args.arch)
        runs.append(r)
        print(f"seed {seed}: accuracy {r['accuracy']:.3f} ({r['seconds']:.0f} s)", flush=True)
        for name, hit in r["top2"].items():
            print(f"  {name:20s} top-2 = marked: {hit:.3f}", flush=True)
        print("  AttnLRP relevance shares (sum over the test set): "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["attnlrp_shares"].items()), flush=True)
    mean = {name: sum(r["top2"][name] for r in runs) / len(runs) for name in runs[0]["top2"]}
    result = {"accuracy": sum(r["accuracy"] for r in runs) / len(runs), "top2": mean, "runs": runs,
              "train": n_train, "test": n_test, "epochs": epochs, "layers": args.layers, "hidden": args.hidden,
              "arch": args.arch,
              "coverage_complete": all(r["coverage_complete"] for r in runs), "seconds": time.perf_counter() - start}

    def row(label: str, accuracy: float, top2: dict) -> str:
        rollout = f"{top2['attention rollout']:.3f}" if "attention rollout" in top2 else "—"
        return (f"| {label} | {accuracy:.3f} | AttnLRP {top2['AttnLRP']:.3f} / CP-LRP {top2['CP-LRP']:.3f} | "
                f"{top2['gradient x input']:.3f} | {top2['gradient (L2)']:.3f} | {rollout} | {top2['random']:.3f} |")

    lines = [f"| transformer ({args.arch}, {args.layers} layer(s)) | test accuracy | LRP | gradient x input | "
             "gradient | attention rollout | random |", "|---|---|---|---|---|---|---|"]
    lines += [row(f"seed {r['seed']}", r["accuracy"], r["top2"]) for r in runs]
    if len(runs) > 1:
        lines.append(row(f"mean of {len(runs)} seeds", result["accuracy"], mean))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"({result['seconds']:.0f} s)\n" + "\n".join(lines))
    return result


if __name__ == "__main__":
    main()
