"""A small CNN with batch norm and a residual block on scikit-learn's digits: pixel-flipping AOPC.

Trains the demo's DigitsCNN (Conv-BN-ReLU, torchvision BasicBlock, max pool, linear), explains the
test digits with the CNN presets and the baselines, and compares them by pixel flipping (MoRF,
LeRF, random; pixels replaced by 0 = background), with AOPC and 95% confidence intervals.

    python nlp_examples/digits_cnn.py [--quick] [--out out/digits]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import seqlrp
from seqlrp.demo import train_digits_cnn
from seqlrp.evaluate import compare_images, format_table, random_explainer, region_perturbation
from seqlrp.viz import Report, perturbation_figure


def explainers():
    def lrp(composite):
        return lambda m, x, t: seqlrp.explain(m, x, t, composite).relevance

    return {
        "LRP EpsilonGammaBox": lrp(seqlrp.cnn.EpsilonGammaBox(0.0, 1.0)),
        "LRP EpsilonPlusFlat": lrp(seqlrp.cnn.EpsilonPlusFlat()),
        "LRP EpsilonAlpha2Beta1": lrp(seqlrp.cnn.EpsilonAlpha2Beta1()),
        "gradient": lambda m, x, t: seqlrp.baselines.gradient(m, x, t).relevance,
        "gradient x input": lambda m, x, t: seqlrp.baselines.gradient_x_input(m, x, t).relevance,
        "guided backprop": lambda m, x, t: seqlrp.baselines.guided_backprop(m, x, t).relevance,
        "random": random_explainer(),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few epochs, 64 test digits (CI)")
    parser.add_argument("--out", default="out/digits_cnn")
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model, test_images, test_labels = train_digits_cnn(generator, epochs=3 if args.quick else 10, desc="training")
    if args.quick:
        test_images, test_labels = test_images[:64], test_labels[:64]
    with torch.no_grad():
        accuracy = float((model(test_images).argmax(1) == test_labels).double().mean())
    rows = compare_images(model, test_images, test_labels, explainers(), steps=16, score="probability")
    print(f"digits CNN: test accuracy {accuracy:.3f} on {len(test_labels)} digits; pixel flipping (64 pixels, "
          "16 steps, replaced by 0), probability of the true class")
    print(format_table(rows))
    report = Report("Digits CNN: pixel flipping", f"test accuracy {accuracy:.3f}")
    report.add_table(list(rows[0].keys()), [list(r.values()) for r in rows], title="AOPC (higher MoRF = better)")
    curves = {name: region_perturbation(model, test_images, explain(model, test_images, test_labels), test_labels,
                                        steps=16, score="probability")
              for name, explain in explainers().items() if name in ("LRP EpsilonGammaBox", "gradient", "random")}
    report.add_figure(perturbation_figure(curves, "MoRF pixel flipping"), "MoRF curves")
    path = report.save(Path(args.out) / "report.html")
    print(f"report: {path}")
    return rows


if __name__ == "__main__":
    main()
