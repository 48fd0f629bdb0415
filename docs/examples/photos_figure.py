"""The photo figure of docs/cnn.md: the pretrained EfficientNet-Lite0 on scikit-image's photos, four explanations.

    python docs/examples/photos_figure.py [--out docs/img/photos-lrp.png]

Rows: chelsea, coffee, rocket, astronaut; columns: the input (with the predicted class), EpsilonGammaBox,
EpsilonPlusFlat, gradient × input, gradient. Each heatmap is drawn with ``seqlrp.viz.heatmap`` on its own
scale (99.5th percentile of |R|, red = for the predicted class, blue = against). Needs ``seqlrp[photos]``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import seqlrp  # noqa: E402
from seqlrp.cnn import EpsilonGammaBox, EpsilonPlusFlat  # noqa: E402
from seqlrp.cnn.pretrained import PHOTOS, efficientnet_lite0, photo  # noqa: E402
from seqlrp.viz import heatmap  # noqa: E402


def explanations(pretrained, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    model = pretrained.model
    return {
        "EpsilonGammaBox": seqlrp.explain(model, x, target, EpsilonGammaBox(pretrained.low, pretrained.high)).relevance,
        "EpsilonPlusFlat": seqlrp.explain(model, x, target, EpsilonPlusFlat()).relevance,
        "gradient × input": seqlrp.baselines.gradient_x_input(model, x, target).relevance,
        "gradient": seqlrp.baselines.gradient(model, x, target).relevance,
    }


def figure(pretrained, x: torch.Tensor, relevance: dict[str, torch.Tensor], titles: list[str]):
    columns = 1 + len(relevance)
    fig, axes = plt.subplots(len(x), columns, figsize=(1.9 * columns, 1.95 * len(x)), squeeze=False)
    pictures = pretrained.unnormalize(x).permute(0, 2, 3, 1).numpy()
    for row in range(len(x)):
        axes[row, 0].imshow(pictures[row])
        axes[row, 0].set_title(titles[row], fontsize=8)
        for column, (name, values) in enumerate(relevance.items(), start=1):
            axes[row, column].imshow(heatmap(values[row].detach(), normalization="percentile"))
            if row == 0:
                axes[row, column].set_title(name, fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout(pad=0.3)
    return fig


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "img" / "photos-lrp.png"))
    args = parser.parse_args(argv)
    pretrained = efficientnet_lite0()
    x = pretrained.preprocess([photo(name) for name in PHOTOS])
    with torch.no_grad():
        target = pretrained.model(x).argmax(1)
    top = pretrained.top(x, k=1)
    titles = [f"{name}: {classes[0][0]} ({classes[0][1]:.2f})" for name, classes in zip(PHOTOS, top, strict=True)]
    fig = figure(pretrained, x, explanations(pretrained, x, target), titles)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    plt.close(fig)
    buffer.seek(0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # an adaptive 96-colour palette keeps the PNG small (docs images are at most 150 kB)
    Image.open(buffer).convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"{out} ({out.stat().st_size:,} bytes)")
    return out


if __name__ == "__main__":
    main()
