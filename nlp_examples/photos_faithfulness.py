"""Faithfulness on a real pretrained model: region perturbation on EfficientNet-Lite0 (ImageNet) and real photos.

Inputs: scikit-image's bundled colour photos (chelsea, coffee, rocket, astronaut), each once with the
model's own preprocessing (resize 256, centre crop 224) and ``--per-photo - 1`` times as a random
resized crop (scale 0.25-1) with a random horizontal flip, all 224x224 (``--per-photo 50``: 200 inputs).
Each input is explained for the class the model predicts on it by

- LRP: EpsilonGammaBox (zB in the normalized pixel box, γ = 0.25), EpsilonPlusFlat, EpsilonAlpha2Beta1;
- gradient × input, the (signed) input gradient;
- Captum: IntegratedGradients (baseline 0 = the mean colour, 16 steps) and NoiseTunnel(Saliency)
  (SmoothGrad: 8 samples, σ = 0.15 of the pixel range; |gradient| as Saliency returns it);
- random relevance (the baseline every method must beat).

Region perturbation (``seqlrp.evaluate.region_perturbation``): 16×16 regions (196 per image), ranked by
their relevance summed over pixels and channels; the most (MoRF) or least (LeRF) relevant half of them
(98) replaced in 8 steps of 13 (the last 7), by uniform noise in the normalized pixel box (drawn once per image and
shared by every method and order) or by a Gaussian blur (σ = 8 pixels); score = the predicted class's
logit; AOPC per input, mean with a 95% CI over the inputs, and the per-input gap AOPC(MoRF) − AOPC(LeRF).

One Quantus metric, FaithfulnessCorrelation (Bhatt et al. 2020: Pearson correlation, over random pixel
subsets, between the subset's summed relevance and the logit drop when the subset is set to 0), is run
on the first ``--quantus`` inputs and cross-checked against an independent numpy implementation fed the
same random subsets (same seed): they must agree to float32 rounding.

Partial results are written after each chunk of inputs (``<out>/photos_faithfulness.json``), so an
interrupted run reports the inputs actually used.

    python nlp_examples/photos_faithfulness.py [--quick] [--per-photo 50] [--out out/photos_faithfulness]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import seqlrp
from seqlrp.evaluate import aopc, region_perturbation, replacement_image, summarize

METHODS = ("LRP EpsilonGammaBox", "LRP EpsilonPlusFlat", "LRP EpsilonAlpha2Beta1", "gradient x input", "gradient",
           "Captum IntegratedGradients", "Captum SmoothGrad (NoiseTunnel Saliency)", "random")


def make_inputs(pretrained, per_photo: int, size: int, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Every bundled photo once centre-cropped and ``per_photo - 1`` times randomly cropped and flipped."""
    from PIL import Image
    from torchvision import transforms

    from seqlrp.cnn.pretrained import PHOTOS, photo

    normalize = transforms.Normalize(pretrained.mean, pretrained.std)
    centre = transforms.Compose([transforms.Resize(int(size / 0.875), transforms.InterpolationMode.BICUBIC),
                                 transforms.CenterCrop(size), transforms.ToTensor(), normalize])
    random = transforms.Compose([transforms.RandomResizedCrop(size, scale=(0.25, 1.0),
                                                              interpolation=transforms.InterpolationMode.BICUBIC),
                                 transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
    torch.manual_seed(seed)  # torchvision's random transforms draw from the global generator
    images, names = [], []
    sources = {name: Image.fromarray(photo(name)) for name in PHOTOS}
    for k in range(per_photo):  # the photos take turns: any prefix of the inputs (a partial run) is balanced
        for name, image in sources.items():
            images.append(centre(image) if k == 0 else random(image))
            names.append(name if k == 0 else f"{name} crop {k}")
    return torch.stack(images), names


def explainers(pretrained, ig_steps: int, smooth_samples: int) -> dict:
    """``name -> explain(model, x, target) -> relevance (B, 3, H, W)``, in the order of :data:`METHODS`."""
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    from seqlrp import baselines
    from seqlrp.cnn import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat
    from seqlrp.evaluate import random_explainer

    def lrp(composite):
        return lambda m, x, t: seqlrp.explain(m, x, t, composite).relevance.detach()

    sigma = 0.15 * float((pretrained.high - pretrained.low).mean())
    return {
        "LRP EpsilonGammaBox": lrp(EpsilonGammaBox(pretrained.low, pretrained.high)),
        "LRP EpsilonPlusFlat": lrp(EpsilonPlusFlat()),
        "LRP EpsilonAlpha2Beta1": lrp(EpsilonAlpha2Beta1()),
        "gradient x input": lambda m, x, t: baselines.gradient_x_input(m, x, t).relevance.detach(),
        "gradient": lambda m, x, t: baselines.gradient(m, x, t).relevance.detach(),
        "Captum IntegratedGradients": lambda m, x, t: IntegratedGradients(m).attribute(
            x, baselines=torch.zeros_like(x), target=t, n_steps=ig_steps, internal_batch_size=len(x) * 8).detach(),
        "Captum SmoothGrad (NoiseTunnel Saliency)": lambda m, x, t: NoiseTunnel(Saliency(m)).attribute(
            x, nt_type="smoothgrad", nt_samples=smooth_samples, nt_samples_batch_size=len(x) * 4, stdevs=sigma,
            target=t).detach(),
        "random": random_explainer(0),
    }


def faithfulness_correlation_reference(model, x: np.ndarray, y: np.ndarray, a: np.ndarray, nr_runs: int,
                                       subset_size: int) -> np.ndarray:
    """Faithfulness correlation written out: for each run, ``subset_size`` random features (over C·H·W,
    drawn like Quantus: one ``np.random.choice`` per input per run) set to 0; Pearson correlation of the
    subsets' relevance sums with the logit drops, per input."""
    batch = len(x)
    flat, relevance = x.reshape(batch, -1), np.broadcast_to(a, x.shape).reshape(batch, -1)
    with torch.no_grad():
        logit = model(torch.from_numpy(x)).numpy()[np.arange(batch), y]
    sums, drops = [], []
    for _ in range(nr_runs):
        idx = np.stack([np.random.choice(flat.shape[1], subset_size, replace=False) for _ in range(batch)])
        perturbed = flat.copy()
        perturbed[np.arange(batch)[:, None], idx] = 0.0
        with torch.no_grad():
            out = model(torch.from_numpy(perturbed.reshape(x.shape))).numpy()[np.arange(batch), y]
        drops.append(logit - out)
        sums.append(relevance[np.arange(batch)[:, None], idx].sum(1))
    sums, drops = np.stack(sums, 1).astype(np.float64), np.stack(drops, 1).astype(np.float64)
    sums -= sums.mean(1, keepdims=True)
    drops -= drops.mean(1, keepdims=True)
    return (sums * drops).sum(1) / np.sqrt((sums ** 2).sum(1) * (drops ** 2).sum(1))


def quantus_check(model, x: torch.Tensor, targets: torch.Tensor, relevance: dict, nr_runs: int, subset_size: int,
                  seed: int = 0) -> list[dict]:
    """FaithfulnessCorrelation from Quantus and from the reference above, same seed, per method."""
    import quantus

    rows = []
    xs, ys = x.numpy(), targets.numpy()
    for name, r in relevance.items():
        a = r.numpy().astype(np.float32)
        metric = quantus.FaithfulnessCorrelation(nr_runs=nr_runs, subset_size=subset_size, perturb_baseline=0.0,
                                                 normalise=False, abs=False, return_aggregate=False,
                                                 disable_warnings=True, display_progressbar=False)
        np.random.seed(seed)
        theirs = np.asarray(metric(model=model, x_batch=xs, y_batch=ys, a_batch=a, softmax=False, device="cpu",
                                   channel_first=True), dtype=np.float64)
        np.random.seed(seed)
        ours = faithfulness_correlation_reference(model, xs, ys, a, nr_runs, subset_size)
        summary = summarize(torch.from_numpy(np.nan_to_num(theirs)))
        rows.append({"explainer": name, "faithfulness correlation": summary.mean, "ci_low": summary.low,
                     "ci_high": summary.high, "n": summary.n,
                     "max |Quantus - reference|": float(np.max(np.abs(theirs - ours)))})
    return rows


def table(per_input: dict[str, dict[str, dict[str, list[float]]]]) -> list[dict]:
    rows = []
    for replacement, methods in per_input.items():
        for name, orders in methods.items():
            morf, lerf = torch.tensor(orders["morf"]), torch.tensor(orders["lerf"])
            for order, values in (("morf", morf), ("lerf", lerf), ("morf-lerf gap", morf - lerf)):
                s = summarize(values)
                rows.append({"explainer": name, "replacement": replacement, "order": order, "aopc": s.mean,
                             "ci_low": s.low, "ci_high": s.high, "n": s.n})
    return rows


def markdown(rows: list[dict]) -> str:
    """One line per explainer: MoRF, LeRF and gap for each replacement, ``mean [95% CI]``."""
    replacements = list(dict.fromkeys(r["replacement"] for r in rows))
    names = list(dict.fromkeys(r["explainer"] for r in rows))
    cell = {(r["explainer"], r["replacement"], r["order"]): f"{r['aopc']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            for r in rows}
    header = ["explainer"] + [f"{rep} {o}" for rep in replacements for o in ("MoRF", "LeRF", "gap")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        values = [cell[(name, rep, o)] for rep in replacements for o in ("morf", "lerf", "morf-lerf gap")]
        lines.append("| " + " | ".join([name] + values) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 inputs at 96x96, few steps (CI)")
    parser.add_argument("--per-photo", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--quantus", type=int, default=24, help="inputs for the Quantus metric")
    parser.add_argument("--quantus-only", action="store_true",
                        help="only the Quantus metric and its cross-check, on the first --quantus inputs")
    parser.add_argument("--out", default="out/photos_faithfulness")
    args = parser.parse_args(argv)
    from seqlrp.cnn.pretrained import efficientnet_lite0

    pretrained = efficientnet_lite0()
    if args.quick:
        size, patch, steps, fraction, ig_steps, smooth, sigma = 96, 16, 3, 0.5, 4, 3, 4.0
        per_photo, nr_runs, subset, n_quantus = 1, 6, 64, 2
    else:
        size, patch, steps, fraction, ig_steps, smooth, sigma = 224, 16, 8, 0.5, 16, 8, 8.0
        per_photo, nr_runs, subset, n_quantus = args.per_photo, 50, 224 * 3, args.quantus
    images, names = make_inputs(pretrained, per_photo, size)
    if args.quick:
        images, names = images[:2], names[:2]
    if args.quantus_only:
        images, names = images[:n_quantus], names[:n_quantus]
    model = pretrained.model
    print(f"{len(images)} inputs", flush=True)
    with torch.no_grad():
        targets = model(images).argmax(1)
    methods = explainers(pretrained, ig_steps, smooth)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_input = {rep: {name: {"morf": [], "lerf": []} for name in methods} for rep in ("uniform", "blur")}
    kept = {name: [] for name in methods}  # relevance of the first inputs, for the Quantus metric
    start = time.perf_counter()
    for first in range(0, len(images), args.chunk):
        x, t = images[first:first + args.chunk], targets[first:first + args.chunk]
        generator = torch.Generator().manual_seed(first)
        fills = {"uniform": replacement_image(x, "uniform", low=pretrained.low, high=pretrained.high,
                                              generator=generator),
                 "blur": replacement_image(x, "blur", sigma=sigma)}
        for name, explain in methods.items():
            relevance = explain(model, x, t)
            if len(kept[name]) < n_quantus:
                kept[name] += list(relevance[: n_quantus - len(kept[name])])
            if args.quantus_only:
                continue
            for rep, fill in fills.items():
                for order in ("morf", "lerf"):
                    curves = region_perturbation(model, x, relevance, t, patch=patch, order=order, steps=steps,
                                                 fraction=fraction, replacement=fill)
                    per_input[rep][name][order] += aopc(curves).tolist()
        done = min(first + args.chunk, len(images))
        print(f"{done}/{len(images)} inputs, {time.perf_counter() - start:.0f} s", flush=True)
        if args.quantus_only:
            continue
        rows = table(per_input)
        (out / "photos_faithfulness.json").write_text(json.dumps(
            {"inputs_used": done, "inputs_planned": len(images), "seconds": time.perf_counter() - start,
             "settings": {"size": size, "patch": patch, "steps": steps, "fraction": fraction, "ig_steps": ig_steps,
                          "smoothgrad_samples": smooth, "blur_sigma": sigma},
             "rows": rows}, indent=1))
    quantus_rows = []
    if n_quantus:
        quantus_rows = quantus_check(model, images[:n_quantus], targets[:n_quantus],
                                     {name: torch.stack(r) for name, r in kept.items()}, nr_runs, subset)
    if args.quantus_only:
        (out / "photos_quantus.json").write_text(json.dumps({"inputs": len(images), "nr_runs": nr_runs,
                                                             "subset_size": subset, "rows": quantus_rows}, indent=1))
        for row in quantus_rows:
            print(row)
        return {"quantus": quantus_rows}
    result = {"rows": table(per_input), "quantus": quantus_rows, "inputs": len(images),
              "predicted": [pretrained.categories[int(i)] for i in targets], "names": names}
    (out / "photos_faithfulness.json").write_text(json.dumps(
        {**result, "inputs_used": len(images), "inputs_planned": len(images),
         "seconds": time.perf_counter() - start}, indent=1))
    (out / "photos_faithfulness.md").write_text(markdown(result["rows"]) + "\n")
    print(markdown(result["rows"]))
    for row in quantus_rows:
        print(row)
    return result


if __name__ == "__main__":
    main()
