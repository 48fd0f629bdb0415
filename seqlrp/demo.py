"""The main job on an embedded default: explain small generated models, no downloads.

(The full demo with a trained BiLSTM, a CNN on digits and an HTML report comes with the report
issue; this one already runs the whole mechanism and writes its numbers.)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import baselines
from .core import EpsilonEverywhere, ZeroEverywhere, explain


def run_demo(out: Path) -> Path:
    """Explain a small generated CNN with LRP-0, LRP-ε (bias_factor 1) and baselines; write a summary."""
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 10),
    ).double().eval()
    images = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    lines = ["seqlrp demo: a generated CNN, 4 random 16x16 images, float64", ""]
    lrp0 = explain(model, images, composite=ZeroEverywhere())
    gxi = baselines.gradient_x_input(model, images, target=lrp0.target)
    diff = float((lrp0.relevance - gxi.relevance).abs().max())
    lines.append(f"LRP-0 vs gradient x input (must agree on a ReLU net): max |diff| = {diff:.3e}")
    eps = explain(model, images, composite=EpsilonEverywhere(epsilon=0.1, bias_factor=1.0))
    logit = eps.output.gather(1, eps.target[:, None])[:, 0]
    lines.append("LRP-eps (bias_factor=1) conservation, sum of relevance vs target logit:")
    for i in range(images.shape[0]):
        lines.append(f"  image {i}: class {int(eps.target[i])}  sum R = {float(eps.relevance_sum[i]):+.6f}  "
                     f"logit = {float(logit[i]):+.6f}")
    lines += ["", "coverage:", str(eps.coverage), "", "per-layer conservation:", eps.conservation_table()]
    path = out / "summary.txt"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return path
