"""A small CNN with batch norm and a residual block on scikit-learn's digits: pixel-flipping AOPC.

Trains the demo's DigitsCNN (Conv-BN-ReLU, torchvision BasicBlock, max pool, linear), explains the
test digits with the CNN presets and the baselines, and compares them by pixel flipping (MoRF and
LeRF, all 64 pixels in 16 steps) with four replacements: 0 (the background), uniform noise in [0, 1]
(the input range), blur (σ = 1 pixel) and the image's mean; AOPC of the true class's probability
with 95% confidence intervals.

    python nlp_examples/digits_cnn.py [--quick] [--ablation] [--out out/digits]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import seqlrp
from seqlrp.demo import train_digits_cnn
from seqlrp.evaluate import compare_images, format_table, image_explainers, region_perturbation
from seqlrp.viz import Report, perturbation_figure

REPLACEMENTS = {"constant": {"value": 0.0}, "uniform": {"low": 0.0, "high": 1.0}, "blur": {"sigma": 1.0}, "mean": {}}


def ablation():
    """EpsilonGammaBox with one part changed: the first-layer rule, and γ on the convolutions."""
    from seqlrp.cnn.composites import CNNComposite

    def variant(first, gamma=0.25):
        composite = CNNComposite(("gamma", {"gamma": gamma, "epsilon": 1e-6}), ("epsilon", {"epsilon": 1e-6}),
                                 first=first)
        return lambda m, x, t: seqlrp.explain(m, x, t, composite).relevance

    zbox = ("zbox", {"low": 0.0, "high": 1.0, "epsilon": 1e-6})
    return {
        "ablation: γ=0.25, first layer ε": variant(("epsilon", {"epsilon": 1e-6})),
        "ablation: γ=0.25, first layer flat": variant(("flat", {"epsilon": 1e-6})),
        "ablation: γ=0.25, first layer z⁺": variant(("zplus", {"epsilon": 1e-6})),
        "ablation: γ=0.1, first layer zB": variant(zbox, 0.1),
        "ablation: γ=1, first layer zB": variant(zbox, 1.0),
    }


def main(argv=None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few epochs, 64 test digits (CI)")
    parser.add_argument("--ablation", action="store_true", help="also EpsilonGammaBox with other first-layer rules / γ")
    parser.add_argument("--out", default="out/digits_cnn")
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model, test_images, test_labels = train_digits_cnn(generator, epochs=3 if args.quick else 10, desc="training")
    if args.quick:
        test_images, test_labels = test_images[:64], test_labels[:64]
    with torch.no_grad():
        accuracy = float((model(test_images).argmax(1) == test_labels).double().mean())
    methods = {**image_explainers(0.0, 1.0), **(ablation() if args.ablation else {})}
    relevance = {name: explain(model, test_images, test_labels) for name, explain in methods.items()}
    perturbation = dict(steps=16, score="probability", orders=("morf", "lerf"))
    rows = {kind: compare_images(model, test_images, test_labels, relevance, replacement=kind, **parameters,
                                 **perturbation)
            for kind, parameters in REPLACEMENTS.items()}
    print(f"digits CNN: test accuracy {accuracy:.3f} on {len(test_labels)} digits; pixel flipping (64 pixels, "
          "16 steps), probability of the true class")
    report = Report("Digits CNN: pixel flipping", f"test accuracy {accuracy:.3f}")
    for kind, table in rows.items():
        print(f"replacement = {kind}:")
        print(format_table(table))
        report.add_table(list(table[0]), [list(r.values()) for r in table],
                         title=f"AOPC, replacement = {kind} (higher MoRF, lower LeRF = better)")
    curves = {name: region_perturbation(model, test_images, relevance[name], test_labels, steps=16,
                                        score="probability")
              for name in ("LRP EpsilonGammaBox", "gradient x input", "random")}
    report.add_figure(perturbation_figure(curves, "MoRF pixel flipping (replaced by 0)"), "MoRF curves")
    path = report.save(Path(args.out) / "report.html")
    print(f"report: {path}")
    return rows


if __name__ == "__main__":
    main()
