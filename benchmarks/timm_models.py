"""One timm model per CNN family: canonized (forward equivalence, float64), explained (coverage), conservation --
or the one-line reason it is not. The same checks and table as ``benchmarks/models.py`` (torchvision).

Each model: ``timm.create_model(name, pretrained=False)``, random batch-norm statistics and affine parameters
(both signs of γ; also the buffers of frozen batch norms), float64, eval, batch 1 at 64x64 (the size every
family below accepts).

    python benchmarks/timm_models.py [--names resnet18,efficientnet_b0] [--json out.json] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import models  # noqa: E402 - the torchvision survey's checks and table

#: family -> one model of it (the smallest timm 1.0 has)
FAMILIES = {
    "resnet": "resnet18",
    "resnetv2": "resnetv2_18",
    "efficientnet": "efficientnet_b0",
    "efficientnet (lite)": "efficientnet_lite0",
    "efficientnet (tf, same padding)": "tf_efficientnet_b0",
    "efficientnetv2": "efficientnetv2_rw_t",
    "mobilenetv3": "mobilenetv3_small_100",
    "mobilenetv4": "mobilenetv4_conv_small",
    "regnet": "regnety_002",
    "convnext": "convnext_atto",
    "rexnet": "rexnet_100",
    "ghostnet": "ghostnet_100",
    "repvgg": "repvgg_a0",
    "densenet": "densenet121",
    "dpn": "dpn48b",
    "hrnet": "hrnet_w18_small",
    "cspnet": "cspresnet50",
    "darknet (cs3)": "cs3darknet_focus_s",
    "mobileone": "mobileone_s0",
    "lcnet": "lcnet_050",
    "mixnet": "mixnet_s",
    "fbnet": "fbnetv3_b",
    "vovnet": "ese_vovnet19b_dw",
    "dla": "dla34",
    "selecsls": "selecsls42b",
    "res2net": "res2net50_14w_8s",
    "sknet": "skresnet18",
    "resnest": "resnest14d",
    "regnetz": "regnetz_b16",
    "nfnet": "nf_resnet26",
    "hgnetv2": "hgnetv2_b0",
}


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial statistics on every batch norm (also timm's frozen ones, whose weight and bias are buffers)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if not all(isinstance(getattr(module, key, None), torch.Tensor)
                       for key in ("running_mean", "running_var", "weight", "bias")):
                continue
            n = module.running_mean.numel()
            sign = torch.where(torch.rand(n, generator=generator) < 0.2, -1.0, 1.0)
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.copy_(sign * (torch.rand(n, generator=generator) * 0.4 + 0.2))
            module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
        for module in model.modules():
            if isinstance(module, nn.Linear) and not bool(module.weight.any()):  # (zero-initialized heads)
                module.weight.normal_(0, 0.02, generator=generator)
    return model


def build(name: str, size: int = 64, **kwargs) -> tuple[nn.Module, torch.Tensor]:
    """The timm model (float64, eval, random statistics) and a ``(1, 3, size, size)`` input."""
    import timm

    torch.manual_seed(0)
    model = randomize(timm.create_model(name, pretrained=False, **kwargs))
    x = torch.randn(1, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model.double().eval(), x


def check(name: str) -> dict:
    """One row of the table (see ``benchmarks/models.py``)."""
    return models.check(name, build=build)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", help="comma-separated (default: one model per family)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    names = args.names.split(",") if args.names else list(FAMILIES.values())
    family = {name: key for key, name in FAMILIES.items()}
    rows = []
    for name in names:
        row = models.check_isolated(name, args.threads, survey="timm_models")
        row["family"] = family.get(name, "")
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.markdown:
        print(models.markdown(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
