"""A ground-truth image task: one object decides the label; how much relevance lands on it?

64×64 RGB images with a textured, noisy background and 4-7 coloured shapes, one per 16×16 cell at a
random position inside it (no overlaps). Exactly ONE object is a target, a (shape, colour) pair of
the four classes below; the others are distractors whose shape belongs to one class and colour to
another, so the label is decided by the conjunction of shape and colour of the target alone, and
its pixel mask is the ground truth. A small residual CNN with batch norm (Conv-BN pairs in
nn.Sequential, torchvision BasicBlocks, global max pooling; canonized by seqlrp.cnn.canonize) is
trained on the CPU. Test images are explained for their true class and compared by

- relevance mass / rank accuracy against the target's mask (Arras et al. 2022, CLEVR-XAI), and
- region perturbation (4×4 regions, the 12.5% most / least relevant, 2 per step) with four
  replacements: uniform noise in [0, 1] (Samek et al. 2017), blur (σ = 3), the image's channel
  mean, and 0; AOPC of the target logit with 95% confidence intervals.

    python nlp_examples/shapes_task.py [--quick] [--out out/shapes_task]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from seqlrp.demo import train
from seqlrp.evaluate import compare_ground_truth, compare_images, format_table, image_explainers, region_perturbation
from seqlrp.viz import Report, heatmap, perturbation_figure

SIZE, CELL = 64, 16
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow")
RGB = torch.tensor([[0.90, 0.15, 0.10], [0.10, 0.75, 0.20], [0.15, 0.30, 0.95], [0.95, 0.85, 0.10]])
CLASSES = [f"{COLOURS[c]} {SHAPES[c]}" for c in range(4)]  # class c = shape c in colour c
REPLACEMENTS = {"uniform": {"low": 0.0, "high": 1.0}, "blur": {"sigma": 3.0}, "mean": {}, "constant": {"value": 0.0}}


def shape_masks(kind: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Pixel masks ``(N, CELL, CELL)`` of shapes ``kind`` (indices into SHAPES) centred at ``(cy, cx)`` in a cell."""
    grid = torch.arange(CELL, dtype=torch.float32) + 0.5
    dy = grid[None, :, None] - cy[:, None, None]
    dx = grid[None, None, :] - cx[:, None, None]
    r = radius[:, None, None]
    masks = torch.stack([
        dx * dx + dy * dy <= r * r,  # circle
        torch.maximum(dx.abs(), dy.abs()) <= 0.8 * r,  # square
        (dy <= 0.7 * r) & (dx.abs() <= 0.6 * (dy + r)),  # triangle, apex up
        ((dx.abs() <= 0.3 * r) & (dy.abs() <= r)) | ((dy.abs() <= 0.3 * r) & (dx.abs() <= r)),  # cross
    ], 1)
    return masks[torch.arange(len(kind)), kind]


def _to_image(cells: torch.Tensor) -> torch.Tensor:
    """``(N, 16 cells, ..., CELL, CELL)`` -> ``(N, ..., SIZE, SIZE)``, cells in row-major order."""
    n, side = cells.shape[0], SIZE // CELL
    extra = cells.shape[2:-2]
    cells = cells.reshape(n, side, side, -1, CELL, CELL).permute(0, 3, 1, 4, 2, 5)
    return cells.reshape(n, *extra, SIZE, SIZE)


def make_data(n: int, generator: torch.Generator, distractors: tuple[int, int] = (3, 6)):
    """``n`` images ``(n, 3, 64, 64)`` in [0, 1], labels ``(n,)`` and target masks ``(n, 64, 64)`` (bool)."""
    slots, side = 1 + distractors[1], SIZE // CELL
    cells = torch.rand(n, side * side, generator=generator).argsort(1)[:, :slots]  # distinct cells, slot 0 = target
    radius = 5.0 + 2.0 * torch.rand(n, slots, generator=generator)
    slack = CELL / 2 - radius - 0.5
    cy, cx = (CELL / 2 + slack * (2 * torch.rand(n, slots, generator=generator) - 1) for _ in range(2))
    labels = torch.randint(0, 4, (n,), generator=generator)
    shape = torch.randint(0, 4, (n, slots), generator=generator)
    colour = (shape + torch.randint(1, 4, (n, slots), generator=generator)) % 4  # distractors: colour != shape
    shape[:, 0], colour[:, 0] = labels, labels
    active = torch.arange(slots) <= torch.randint(distractors[0], distractors[1] + 1, (n, 1), generator=generator)
    local = shape_masks(shape.flatten(), cy.flatten(), cx.flatten(), radius.flatten()).view(n, slots, CELL, CELL)
    local &= active[:, :, None, None]
    paint = (RGB[colour] + 0.1 * (2 * torch.rand(n, slots, 3, generator=generator) - 1)).clamp(0, 1)
    rows = torch.arange(n)[:, None]
    object_cells = torch.zeros(n, side * side, CELL, CELL, dtype=torch.bool)
    object_cells[rows, cells] = local
    colour_cells = torch.zeros(n, side * side, 3, 1, 1)
    colour_cells[rows, cells] = paint[..., None, None]
    target_cells = torch.zeros(n, side * side, CELL, CELL, dtype=torch.bool)
    target_cells[torch.arange(n), cells[:, 0]] = local[:, 0]
    # background: a grey level plus a smooth colour texture; then pixel noise over everything
    base = 0.3 + 0.3 * torch.rand(n, 1, 1, 1, generator=generator)
    texture = F.interpolate(torch.rand(n, 3, 8, 8, generator=generator) - 0.5, size=SIZE, mode="bilinear")
    colours = _to_image(colour_cells.expand(-1, -1, -1, CELL, CELL))
    images = torch.where(_to_image(object_cells)[:, None], colours, base + 0.4 * texture)
    images = (images + 0.06 * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    return images, labels, _to_image(target_cells)


class ShapesNet(nn.Module):
    """Conv(5×5, stride 2)-BN-ReLU, max pool, BasicBlock, Conv-BN-ReLU, max pool, BasicBlock, global max pool,
    linear (the 16×16 and 8×8 stages; about 5 M multiply-adds per image)."""

    def __init__(self, width: int = 16, classes: int = 4):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 5, stride=2, padding=2), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            BasicBlock(w, w),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            BasicBlock(2 * w, 2 * w),
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(2 * w, classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def example_figure(images, masks, relevance: dict, count: int = 4):
    """Inputs with the target's outline, then each method's heatmap (red = for the class, blue = against)."""
    columns = ["input"] + list(relevance)
    fig, axes = plt.subplots(count, len(columns), figsize=(1.45 * len(columns), 1.55 * count), squeeze=False)
    for i in range(count):
        axes[i, 0].imshow(images[i].permute(1, 2, 0).numpy())
        axes[i, 0].contour(masks[i].numpy(), levels=[0.5], colors="white", linewidths=0.8)
        for j, name in enumerate(relevance, 1):
            axes[i, j].imshow(heatmap(relevance[name][i]))
        for j, title in enumerate(columns):
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(title.replace("LRP ", "LRP\n"), fontsize=6)
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1,500 training images, 3 epochs, 16 test images, 8 perturbation steps (CI)")
    parser.add_argument("--out", default="out/shapes_task")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    n_train, n_test, epochs, steps = (1500, 16, 3, 8) if args.quick else (8000, 1000, 4, 16)
    images, labels, _ = make_data(n_train, generator)
    test_images, test_labels, test_masks = make_data(n_test, generator)

    def batches():
        order = torch.randperm(n_train, generator=generator)
        for begin in range(0, n_train, 64):
            idx = order[begin:begin + 64]
            yield (images[idx],), labels[idx]

    model = train(ShapesNet(), batches, epochs=epochs, lr=3e-3, desc="training")
    with torch.no_grad():
        accuracy = float((model(test_images).argmax(1) == test_labels).double().mean())
    # each method explains once; the comparisons below reuse its relevance
    relevance = {name: explain(model, test_images, test_labels) for name, explain in image_explainers(0.0, 1.0).items()}
    ground_truth = compare_ground_truth(model, test_images, test_labels, test_masks, relevance)
    perturbation = dict(patch=4, steps=steps, fraction=0.125, score="logit")
    aopc_rows = {kind: compare_images(model, test_images, test_labels, relevance, orders=("morf", "lerf"),
                                      replacement=kind, seed=args.seed, **parameters, **perturbation)
                 for kind, parameters in REPLACEMENTS.items()}
    share = float(test_masks.double().mean())
    print(f"shapes task ({'quick' if args.quick else 'full'}): {n_train} training images, {epochs} epochs; test "
          f"accuracy {accuracy:.3f} on {n_test} images; the target covers {share:.1%} of the pixels "
          f"({time.perf_counter() - start:.0f} s)")
    print("ground truth (explaining the true class; chance for both = the mask's share of the pixels):")
    print(format_table(ground_truth))
    for kind, rows in aopc_rows.items():
        print(f"region perturbation, replacement = {kind} (4x4 regions, 12.5% in {steps} steps, target logit):")
        print(format_table(rows))

    report = Report("Shapes: a ground-truth image task",
                    f"classes: {', '.join(CLASSES)}; test accuracy {accuracy:.3f} on {n_test} images; the target "
                    f"object covers {share:.1%} of the pixels")
    report.add_table(list(ground_truth[0]), [list(r.values()) for r in ground_truth],
                     title="Relevance mass and rank accuracy (higher = more relevance on the object; 95% CI)")
    report.add_figure(example_figure(test_images, test_masks, relevance), "test images (white outline: the "
                      "object that decides the label) and heatmaps for the true class")
    for kind, rows in aopc_rows.items():
        report.add_table(list(rows[0]), [list(r.values()) for r in rows],
                         title=f"Region perturbation AOPC, replacement = {kind} (higher MoRF, lower LeRF = better)")
    shown = ("LRP EpsilonGammaBox", "LRP EpsilonPlusFlat", "gradient x input", "random")
    curves = {name: region_perturbation(model, test_images, relevance[name], test_labels, replacement="uniform",
                                        generator=torch.Generator().manual_seed(args.seed), **perturbation)
              for name in shown}
    report.add_figure(perturbation_figure(curves, "MoRF, uniform noise"), "MoRF curves (uniform noise)")
    path = report.save(Path(args.out) / "report.html")
    print(f"report: {path}")
    return {"accuracy": accuracy, "mask_share": share, "ground_truth": ground_truth, "aopc": aopc_rows}


if __name__ == "__main__":
    main()
