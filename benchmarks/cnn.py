"""CNN relevance cost: plain input gradient vs seqlrp's EpsilonPlusFlat / EpsilonGammaBox vs zennit's.

resnet50, densenet121, vgg16 (weights=None, eval), batch 8 (64 with ``--device cuda``), 224x224, float32,
2 threads. Timings are
medians after 3 warm-up calls, all in one process, the methods of a model taking turns in each round
(so a drift of the machine's speed hits all of them alike); peak RSS per (model, method) is measured
in a fresh subprocess running that method alone (ru_maxrss minus the process's RSS before the call).

Run with: GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
          python benchmarks/cnn.py [--models resnet50,densenet121,vgg16] [--repeats 5]
          python benchmarks/cnn.py --device cuda    # batch 64, torch.cuda.max_memory_allocated peaks
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys

import torch
import torchvision

import seqlrp

try:
    from benchmarks.timing import device_sync, interleaved_medians
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from timing import device_sync, interleaved_medians
from seqlrp.cnn import EpsilonGammaBox, EpsilonPlusFlat, bounds_from_normalization

LOW, HIGH = bounds_from_normalization([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
LOW, HIGH = LOW.float(), HIGH.float()


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


def methods(model: torch.nn.Module, x: torch.Tensor, only: str | None = None) -> dict:
    target = torch.arange(x.shape[0], device=x.device) % 1000
    low, high = LOW.to(x.device), HIGH.to(x.device)

    def gradient():
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        torch.autograd.grad(out, xg, torch.nn.functional.one_hot(target, out.shape[1]).to(out))

    found = {
        "gradient": gradient,
        "seqlrp EpsilonPlusFlat": lambda: seqlrp.explain(model, x, target, EpsilonPlusFlat(), seed="one"),
        "seqlrp EpsilonGammaBox": lambda: seqlrp.explain(model, x, target, EpsilonGammaBox(low, high), seed="one"),
        # the canonization every CNN explain does afresh (no cache: never stale), timed alone
        "canonize (in explain)": lambda: seqlrp.cnn.canonize(model, verify=False),
    }
    if only is not None and not only.startswith("zennit"):
        return {only: found[only]}
    try:
        from zennit.attribution import Gradient
        from zennit.composites import EpsilonGammaBox as ZGammaBox
        from zennit.composites import EpsilonPlusFlat as ZPlusFlat
        from zennit.torchvision import ResNetCanonizer, VGGCanonizer
    except ImportError:
        return found
    canonizers = {"resnet50": [ResNetCanonizer()], "vgg16": [VGGCanonizer()]}
    zmodel = copy.deepcopy(model)

    def zennit(make):
        def run():
            with Gradient(model=zmodel, composite=make()) as attributor:
                attributor(x, lambda out: torch.nn.functional.one_hot(target, out.shape[1]).to(out))
        return run

    name = type(model).__name__.lower()
    key = "resnet50" if "resnet" in name else ("vgg16" if "vgg" in name else None)
    if key is not None:  # zennit ships no DenseNet canonizer
        found["zennit EpsilonPlusFlat"] = zennit(lambda: ZPlusFlat(canonizers=canonizers[key]))
        found["zennit EpsilonGammaBox"] = zennit(
            lambda: ZGammaBox(low=low.expand_as(x), high=high.expand_as(x), canonizers=canonizers[key]))
    return found if only is None else {only: found[only]}


def peak_rss(model_name: str, method: str, batch: int, size: int, threads: int) -> float:
    """MiB of peak RSS above the resident size before one call of ``method`` (fresh subprocess).

    The peak is the kernel's VmHWM, reset right before the call (``/proc/self/clear_refs``): the
    ``ru_maxrss`` of a child process starts at its parent's resident size (kept across fork + exec),
    which would hide the call's own peak behind the benchmark process's.
    """
    code = (
        "import os, torch, sys; sys.argv=['x'];"
        f"import benchmarks.cnn as b; torch.set_num_threads({threads});"
        f"m=b.build({model_name!r}); x=torch.rand({batch},3,{size},{size}); f=b.methods(m,x,{method!r})[{method!r}];"
        "hwm=lambda: int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]);"
        "open('/proc/self/clear_refs','w').write('5');"
        "r0=int(open('/proc/self/statm').read().split()[1])*os.sysconf('SC_PAGE_SIZE')//1024; f();"
        "print(hwm() - r0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def peak_cuda(fn, device) -> float:
    """MiB of CUDA memory allocated at the peak of one call above what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,densenet121,vgg16")
    parser.add_argument("--batch", type=int, default=None, help="default 8 on the CPU, 64 on CUDA")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda[:i] (CUDA: peak = torch.cuda.max_memory_allocated)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--json", help="also write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.batch = args.batch or (64 if cuda else 8)
    rows = []
    print(f"batch {args.batch}, {args.size}x{args.size}, float32, {device}, {args.threads} threads, "
          f"median of {args.repeats}")
    peak_name = "peak CUDA MiB" if cuda else "peak RSS MiB"
    print(f"{'model':12s} {'method':24s} {'median s':>9s} {'x gradient':>10s} {peak_name:>13s}")
    for name in args.models.split(","):
        model = build(name).to(device)
        x = torch.rand(args.batch, 3, args.size, args.size, device=device)
        found = methods(model, x)
        medians = interleaved_medians(found, args.repeats, sync=device_sync(device))
        base = medians["gradient"]
        for method, t in medians.items():
            if args.no_memory or method.startswith("canonize"):
                rss = float("nan")
            elif cuda:
                rss = peak_cuda(found[method], device)
            else:
                rss = peak_rss(name, method, args.batch, args.size, args.threads)
            rows.append({"model": name, "method": method, "seconds": t, "ratio": t / base, "peak_rss_mib": rss})
            print(f"{name:12s} {method:24s} {t:9.3f} {t / base:10.2f} {rss:13.0f}", flush=True)
        share = medians["canonize (in explain)"] / medians["seqlrp EpsilonPlusFlat"]
        print(f"{name:12s} canonization = {100 * share:.1f}% of an EpsilonPlusFlat explanation", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
