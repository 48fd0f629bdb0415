from __future__ import annotations

import torch
import torchvision
from torch import nn


def randomize_batchnorm(model: nn.Module, seed: int = 0, zero_gamma_every: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (optionally some γ = 0 channels)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                n = bn.num_features
                # both signs of γ, moderate scale: activations stay O(1) through 150+ layers
                sign = torch.where(torch.rand(n, generator=g) < 0.2, -1.0, 1.0)
                bn.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                bn.weight.copy_(sign * (torch.rand(n, generator=g) * 0.4 + 0.2))
                bn.bias.copy_(torch.randn(n, generator=g) * 0.2)
                if zero_gamma_every:
                    bn.weight[::zero_gamma_every] = 0
    return model


def torchvision_model(name: str, seed: int = 0, zero_gamma_every: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None, **kw)
    return randomize_batchnorm(model, seed, zero_gamma_every).eval().double()
