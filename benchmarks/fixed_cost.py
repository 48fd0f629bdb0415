"""Per-call fixed cost of ``explain_text`` and ``explain``, and explain_text on short SST-2 phrases.

Three measurements, all in one process (medians of interleaved warm calls, see ``timing.py``):

1. ``explain_text`` on a batch of ONE 4-token sentence (a tiny bidirectional LSTM classifier, e = d = 8)
   against the plain forward of the same batch (no grad): the difference is the per-call fixed work
   (checks, structural copy, wrapping, coverage walk, Explanation), since the arithmetic is negligible.
2. ``explain`` on ONE 32x32 RGB image through a 3-layer CNN (conv-relu-conv-relu-linear), same comparison.
3. ``explain_text`` on length-sorted batches of 64 SST-2 training phrases (../shared/data/sst2/train.tsv, the
   first ``--phrases``) through the reference-sized BiLSTM (e = d = 60, Arras et al. 2017), as a multiple of
   the plain forward over the same batches.

Also prints the lines of Python per package (``wc -l`` of seqlrp/*/ and the top-level modules).

Times are process CPU time by default (``--clock cpu``: ``time.process_time``; with one thread it is the work
done, whatever else runs on the machine); ``--clock wall`` measures elapsed time (quiet machines only).

Run with: GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
          python benchmarks/fixed_cost.py [--threads 1] [--calls 200] [--clock cpu] [--json out/fixed_cost.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import seqlrp
from seqlrp.lstm import BiLSTMClassifier

try:
    from benchmarks.lstm import batches
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from lstm import batches

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def per_call(fns: dict, calls: int, warmup: int = 10) -> dict:
    """Median seconds of ONE call per function (interleaved, after warm-up), on :data:`clock`."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {name: [] for name in fns}
    for _ in range(calls):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def text_fixed_cost(calls: int) -> dict:
    torch.manual_seed(0)
    model = BiLSTMClassifier(50, 8, 8, 2).eval()
    ids = torch.tensor([[3, 14, 15, 9]])

    def forward():
        with torch.no_grad():
            model(ids)

    return per_call({"forward": forward, "explain": lambda: seqlrp.explain_text(model, ids)}, calls)


def image_fixed_cost(calls: int) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 32 * 32, 10)).eval()
    x = torch.randn(1, 3, 32, 32)

    def forward():
        with torch.no_grad():
            model(x)

    return per_call({"forward": forward, "explain": lambda: seqlrp.explain(model, x)}, calls)


def phrases(limit: int) -> list[list[str]]:
    path = DATA / "train.tsv"
    if path.exists():
        lines = path.read_text().splitlines()[1:]
        words = [line.split("\t")[0].split() for line in lines]
        words = [w for w in words if w]
    else:  # generated: short phrases like SST-2's (1..12 tokens)
        gen = torch.Generator().manual_seed(0)
        words = [[f"w{int(i)}" for i in torch.randint(0, 5000, (int(n),), generator=gen)]
                 for n in torch.randint(1, 12, (limit,), generator=gen)]
    return words[:limit]


def sst2_batches(n: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = BiLSTMClassifier(20000, 60, 60, 5).eval()
    data = list(batches(phrases(n), {}, 64, "sorted"))

    def forward():
        with torch.no_grad():
            for ids, lengths in data:
                model(ids, lengths)

    def explain():
        for ids, lengths in data:
            seqlrp.explain_text(model, ids, lengths=lengths)

    seconds = per_call({"forward": forward, "explain": explain}, repeats, warmup=2)
    return {"phrases": n, "batches": len(data), "tokens_per_phrase": sum(int(b[1].sum()) for b in data) / n,
            "seconds": seconds, "ratio": seconds["explain"] / seconds["forward"]}


def lines_per_package() -> dict:
    package = ROOT / "seqlrp"
    counts = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        key = parts[0] if len(parts) > 1 else "(top level)"
        counts[key] = counts.get(key, 0) + len(path.read_text().splitlines())
    counts["total"] = sum(counts.values())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=200, help="timed calls per function (fixed-cost part)")
    parser.add_argument("--phrases", type=int, default=2048, help="SST-2 phrases for the batch part")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the phrases (medians)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="process CPU time (default) or elapsed wall time")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    results = {"threads": args.threads, "clock": args.clock}
    print(f"{args.threads} thread(s), float32, CPU, {args.clock} time; medians of {args.calls} interleaved warm calls")
    print(f"{'case':44s} {'forward ms':>11s} {'explain ms':>11s} {'fixed ms':>9s} {'x forward':>10s}")
    for name, fn in (("explain_text: 1 sentence of 4 tokens, BiLSTM 8", text_fixed_cost),
                     ("explain: 1 image 32x32, 3-layer CNN", image_fixed_cost)):
        seconds = fn(args.calls)
        f, e = seconds["forward"], seconds["explain"]
        results[name] = {"forward_ms": 1e3 * f, "explain_ms": 1e3 * e, "fixed_ms": 1e3 * (e - f)}
        print(f"{name:44s} {1e3 * f:11.3f} {1e3 * e:11.3f} {1e3 * (e - f):9.3f} {e / f:10.1f}", flush=True)
    sst = sst2_batches(args.phrases, args.repeats)
    results["sst2_sorted_64"] = sst
    print(f"explain_text, {sst['phrases']} SST-2 phrases ({sst['tokens_per_phrase']:.1f} tokens), {sst['batches']} "
          f"length-sorted batches of 64, BiLSTM 60: forward {sst['seconds']['forward']:.3f} s, explain "
          f"{sst['seconds']['explain']:.3f} s = {sst['ratio']:.2f} x forward")
    lines = lines_per_package()
    results["lines"] = lines
    print("lines per package: " + ", ".join(f"{k} {v}" for k, v in lines.items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
