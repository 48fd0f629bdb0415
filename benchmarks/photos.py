"""A real pretrained model: one 224² explanation of EfficientNet-Lite0 (ImageNet weights) vs its input gradient.

The photos of scikit-image (chelsea, coffee, rocket, astronaut) with the model's preprocessing, the
predicted class; batch 1 and batch 4, float32, 2 threads. Medians after 3 warm-up calls, the methods
taking turns in each round, all in one process; the ratio to the plain input gradient
(``torch.autograd.grad`` of the target logit) is the number that matters (issue 24: ≤ 2×). Beside it, the rule's
FLOP bound (``flops.py``): the convolution and matrix-product work of the explanation over the gradient's.
The explanation includes the canonization it does afresh on every call. ``--clock cpu --threads 1``
measures process CPU time instead of wall time (for a shared, overloaded machine).

Run with: GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
          python benchmarks/photos.py [--repeats 7] [--json out/photos_bench.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

import seqlrp

try:
    from benchmarks.flops import matmul_flops
    from benchmarks.timing import interleaved_medians
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from flops import matmul_flops
    from timing import interleaved_medians
from seqlrp.cnn import EpsilonGammaBox, EpsilonPlusFlat
from seqlrp.cnn.pretrained import PHOTOS, efficientnet_lite0, photo


def cpu_medians(fns: dict, repeats: int, warmup: int = 3) -> dict:
    """Like ``interleaved_medians`` but on this process's CPU time (``time.process_time``): on a shared,
    overloaded machine the wall clock mostly measures the other processes; with one thread the CPU
    time of a call is its work."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: perf_counter (a quiet machine); cpu: process CPU time (loaded; --threads 1)")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", seqlrp.CoverageWarning)
    pretrained = efficientnet_lite0()
    model = pretrained.model
    images = pretrained.preprocess([photo(name) for name in PHOTOS])
    results = {}
    for batch in (int(b) for b in args.batches.split(",")):
        x = images[:batch]
        with torch.no_grad():
            target = model(x).argmax(1)

        def gradient(x=x, target=target):
            xg = x.clone().requires_grad_(True)
            out = model(xg)
            torch.autograd.grad(out, xg, torch.nn.functional.one_hot(target, out.shape[1]).to(out))

        fns = {
            "gradient": gradient,
            "EpsilonGammaBox": lambda x=x, t=target: seqlrp.explain(
                model, x, t, EpsilonGammaBox(pretrained.low, pretrained.high)),
            "EpsilonPlusFlat": lambda x=x, t=target: seqlrp.explain(model, x, t, EpsilonPlusFlat()),
        }
        medians = (cpu_medians if args.clock == "cpu" else interleaved_medians)(fns, args.repeats)
        flops = {name: matmul_flops(fn) for name, fn in fns.items()}
        results[batch] = {name: {"seconds": s, "ratio": s / medians["gradient"], "flops": flops[name],
                                 "flop_ratio": flops[name] / flops["gradient"]} for name, s in medians.items()}
        for name, row in results[batch].items():
            print(f"efficientnet_lite0 224² batch {batch} ({args.clock}, {args.threads} threads): {name:16s} "
                  f"{row['seconds'] * 1000:8.1f} ms  {row['ratio']:.2f}x gradient  "
                  f"(FLOP bound {row['flop_ratio']:.2f}x: {row['flops'] / 1e9:.2f} GFLOP; "
                  f"time / bound {row['ratio'] / row['flop_ratio']:.2f})", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


if __name__ == "__main__":
    main()
