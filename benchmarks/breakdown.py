"""Where an explanation's time goes: the rules' products, the element-wise passes, and Python.

For each model and method of :mod:`benchmarks.cnn` (plain input gradient, seqlrp EpsilonPlusFlat /
EpsilonGammaBox), one call after 3 warm-ups runs under ``torch.profiler`` and its ATen self-times are split in

- **products**: convolutions, transposed convolutions and matrix products (``*conv*``, ``mm``, ``addmm``,
  ``bmm``, ...), the work the rules cannot skip: the forward, each rule's modified forward(s) and
  transpose(s);
- **element-wise**: every other ATen op (activations, clamps, quotients, products with the input,
  the conservation sums, copies);
- **rest**: the profiled wall time minus both (Python, autograd, dispatch; inflated by the profiler).

``products / gradient`` is how far below the ratio to a gradient no implementation of the same exact
rules with the same kernels can go: the floor left for everything else is ``floor - products / gradient``.
The gradient's median is measured unprofiled, interleaved with the methods (:mod:`benchmarks.timing`).

Run with: GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
          python benchmarks/breakdown.py [--models efficientnet_b0,mobilenet_v3_large] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

try:
    from benchmarks.cnn import build, methods
    from benchmarks.timing import interleaved_medians
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from cnn import build, methods
    from timing import interleaved_medians

#: ATen ops that are products of a layer's weights with activations (forward or transposed)
PRODUCTS = re.compile(r"conv|^aten::(mm|addmm|bmm|baddbmm|matmul|linear|_mkldnn_transpose|mkldnn_linear)$")

MODELS = "efficientnet_b0,mobilenet_v3_large,regnet_y_400mf,convnext_tiny"


def breakdown(fn: Callable[[], object]) -> dict[str, float]:
    """Seconds of one profiled call of ``fn``: ``wall``, ``products``, ``elementwise`` and ``rest``."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
    products = elementwise = 0.0
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        seconds = event.self_cpu_time_total / 1e6
        if PRODUCTS.search(event.key):
            products += seconds
        else:
            elementwise += seconds
    return {"wall": wall, "products": products, "elementwise": elementwise,
            "rest": max(wall - products - elementwise, 0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {args.size}x{args.size}, float32, cpu, {args.threads} threads; ms of one profiled "
          f"call, ratios to the unprofiled median gradient (median of {args.repeats})")
    print(f"{'model':20s} {'method':24s} {'median':>7s} {'x grad':>6s} {'products':>8s} {'x grad':>6s} "
          f"{'elementwise':>11s} {'rest':>6s}")
    rows = []
    for name in args.models.split(","):
        model = build(name)
        x = torch.rand(args.batch, 3, args.size, args.size)
        found = {k: v for k, v in methods(model, x).items() if not k.startswith(("canonize", "zennit"))}
        medians = interleaved_medians(found, args.repeats)
        base = medians["gradient"]
        for method, fn in found.items():
            parts = breakdown(fn)
            row = {"model": name, "method": method, "median": medians[method], "ratio": medians[method] / base,
                   "products_ratio": parts["products"] / base, **parts}
            rows.append(row)
            print(f"{name:20s} {method:24s} {1e3 * row['median']:7.0f} {row['ratio']:6.2f} "
                  f"{1e3 * parts['products']:8.0f} {row['products_ratio']:6.2f} {1e3 * parts['elementwise']:11.0f} "
                  f"{1e3 * parts['rest']:6.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
