"""Speed of LRP on the recurrent families (Mamba, Mamba2, RecurrentGemma, RWKV, xLSTM; transformers' slow paths).

Each family, a small random model (hidden 64, 2 layers) over input embeddings with a linear head on the last
token, at ``--batch`` sequences of ``--tokens`` tokens, float32, ``--threads`` threads: the median time of

* LRP (``seqlrp.explain`` with the family's preset),
* the input gradient through transformers' own slow path (``autograd.grad`` of the target logit),
* the forward alone (no grad),

the three taking turns (3 warm-up calls, medians), and the ratios LRP / gradient and LRP / forward.

Run with: GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
          python benchmarks/recurrent.py [--batch 64] [--tokens 64] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

import seqlrp

try:
    from benchmarks.timing import interleaved_medians
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from timing import interleaved_medians

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "nlp_examples"))


def model_of(family: str, hidden: int):
    from toy_task_recurrent import backbone

    class LastToken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = backbone(family, hidden), torch.nn.Linear(hidden, 2)

        def forward(self, embeds):
            return self.head(self.backbone(inputs_embeds=embeds, use_cache=False).last_hidden_state[:, -1])

    torch.manual_seed(0)
    return LastToken().eval()


def time_family(model, args) -> dict:
    """Median seconds of LRP, the input gradient and the forward (taking turns)."""
    x = torch.randn(args.batch, args.tokens, args.hidden, generator=torch.Generator().manual_seed(1))
    target = torch.zeros(args.batch, dtype=torch.long)
    composite = seqlrp.recurrent.RecurrentLRP(epsilon=1e-6)

    def lrp():
        return seqlrp.explain(model, x, target, composite=composite, record="none")

    def gradient():
        xg = x.clone().requires_grad_(True)
        return torch.autograd.grad(model(xg)[:, 0].sum(), xg)

    def forward():
        with torch.no_grad():
            return model(x)

    return interleaved_medians({"lrp": lrp, "gradient": gradient, "forward": forward}, args.repeats)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="mamba,mamba2,recurrent_gemma,rwkv,xlstm")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="out/bench_recurrent.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    results = {}
    for family in args.families.split(","):
        times = time_family(model_of(family, args.hidden), args)
        results[family] = {**times, "lrp/gradient": times["lrp"] / times["gradient"],
                           "lrp/forward": times["lrp"] / times["forward"]}
        print(f"{family:16s} LRP {times['lrp'] * 1e3:8.1f} ms  gradient {times['gradient'] * 1e3:8.1f} ms  forward "
              f"{times['forward'] * 1e3:8.1f} ms  LRP/gradient {results[family]['lrp/gradient']:.2f}  "
              f"LRP/forward {results[family]['lrp/forward']:.2f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"batch": args.batch, "tokens": args.tokens, "hidden": args.hidden,
                               "threads": args.threads, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
