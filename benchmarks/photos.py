"""A real pretrained model: one 224² explanation of EfficientNet-Lite0 (ImageNet weights) vs its input gradient.

The photos of scikit-image (chelsea, coffee, rocket, astronaut) with the model's preprocessing, the
predicted class; batch 1 and batch 4, float32, 2 threads. Medians after 3 warm-up calls, the methods
taking turns in each round, all in one process; the ratio to the plain input gradient
(``torch.autograd.grad`` of the target logit) is the number that matters (issue 24: ≤ 2×).
The explanation includes the canonization it does afresh on every call.

Run with: GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
          python benchmarks/photos.py [--repeats 7] [--json out/photos_bench.json]
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch

import seqlrp

try:
    from benchmarks.timing import interleaved_medians
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from timing import interleaved_medians
from seqlrp.cnn import EpsilonGammaBox, EpsilonPlusFlat
from seqlrp.cnn.pretrained import PHOTOS, efficientnet_lite0, photo


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", seqlrp.CoverageWarning)
    pretrained = efficientnet_lite0()
    model = pretrained.model
    images = pretrained.preprocess([photo(name) for name in PHOTOS])
    results = {}
    for batch in (1, 4):
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
        medians = interleaved_medians(fns, args.repeats)
        results[batch] = {name: {"seconds": s, "ratio": s / medians["gradient"]} for name, s in medians.items()}
        for name, row in results[batch].items():
            print(f"efficientnet_lite0 224² batch {batch}: {name:16s} {row['seconds'] * 1000:8.1f} ms  "
                  f"{row['ratio']:.2f}x gradient", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


if __name__ == "__main__":
    main()
