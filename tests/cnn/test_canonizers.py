"""Canonizers are objects with one protocol, held by the composite: a user's canonizer is applied."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import seqlrp
from seqlrp.cnn import (
    DEFAULT_CANONIZERS,
    CanonizationError,
    Canonizer,
    ChannelAffine,
    EpsilonPlusFlat,
    KeepAsAffine,
    canonize,
)
from seqlrp.core.session import NoRuleError

from ..core.helpers import assert_unchanged, snapshot


class HandNorm(nn.Module):
    """A user's batch norm written out by hand: ``(x - mean) / sqrt(var + eps) * weight + bias``."""

    def __init__(self, channels: int):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.register_buffer("mean", torch.randn(channels, generator=g) * 0.3)
        self.register_buffer("var", torch.rand(channels, generator=g) + 0.5)
        self.weight = nn.Parameter(torch.rand(channels, generator=g) + 0.5)
        self.bias = nn.Parameter(torch.randn(channels, generator=g) * 0.2)
        self.eps = 1e-5

    def forward(self, x):
        shape = (1, -1, 1, 1)
        return (x - self.mean.view(shape)) / torch.sqrt(self.var.view(shape) + self.eps) * self.weight.view(shape) \
            + self.bias.view(shape)


class HandNormCanonizer(Canonizer):
    """The user's pattern: their HandNorm is a BatchNorm2d (then fused into the conv before it)."""

    stages = frozenset({"split"})

    def __init__(self):
        self.seen = 0

    def rebuild(self, module, place):
        if type(module) is not HandNorm:
            return None
        self.seen += 1
        bn = nn.BatchNorm2d(module.mean.numel(), eps=module.eps).to(module.mean.dtype)
        with torch.no_grad():
            bn.running_mean.copy_(module.mean), bn.running_var.copy_(module.var)
            bn.weight.copy_(module.weight), bn.bias.copy_(module.bias)
        return bn.eval()


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), HandNorm(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(6, 4)).double().eval()


X = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


def test_a_user_canonizer_held_by_the_composite_is_applied():
    model = _model()
    before = snapshot(model)
    with pytest.raises(NoRuleError, match="HandNorm"):  # without it: a layer with parameters and no rule
        seqlrp.explain(model, X, composite=EpsilonPlusFlat())
    user = HandNormCanonizer()
    composite = EpsilonPlusFlat(canonizers=(user, *DEFAULT_CANONIZERS))
    assert composite.canonizers[0] is user
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqlrp.CoverageWarning)
        result = seqlrp.explain(model, X, composite=composite)
    assert user.seen >= 1 and result.coverage.complete
    canonical = composite.canonize(model)
    # the user's norm became a batch norm and was fused into the conv: no norm, no affine left
    assert not any(isinstance(m, (HandNorm, nn.BatchNorm2d, ChannelAffine)) for m in canonical.modules())
    with torch.no_grad():
        torch.testing.assert_close(canonical(X), model(X), rtol=1e-12, atol=1e-12)
    assert_unchanged(model, before)


def test_the_canonizers_are_data_leaving_one_out_changes_the_canonization():
    """Without KeepAsAffine, a batch norm after a ReLU (neither fusable into its producer nor its consumer) is left
    as it is; with the defaults it becomes a ChannelAffine."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(X.float())
    model = model.double().eval()
    without = [c for c in DEFAULT_CANONIZERS if not isinstance(c, KeepAsAffine)]
    assert any(isinstance(m, ChannelAffine) for m in canonize(model, example_input=X).modules())
    left = canonize(model, example_input=X, canonizers=without)
    assert any(type(m) is nn.BatchNorm2d for m in left.modules())


def test_canonizers_must_be_canonizer_objects():
    with pytest.raises(TypeError, match="Canonizer"):
        EpsilonPlusFlat(canonizers=[lambda module, place: None])
    with pytest.raises(TypeError, match="Canonizer"):
        canonize(_model(), canonizers=["fuse"])


def test_canonization_errors_still_name_the_module():
    model = _model()
    model[0].register_forward_hook(lambda *a: None)
    with pytest.raises(CanonizationError, match="'0'"):
        canonize(nn.Sequential(model[0], nn.BatchNorm2d(6)).double().eval(), example_input=X)


def test_the_cnn_package_has_no_import_cycle():
    """The modules of seqlrp/cnn import each other without a cycle (module-level and function-level imports)."""
    root = Path(seqlrp.__file__).parent / "cnn"
    edges = {}
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        edges[path.stem] = {node.module.split(".")[0] for node in ast.walk(tree)
                            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
        edges[path.stem] |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                             and node.level == 1 and not node.module for alias in node.names}

    def visit(name, stack):
        assert name not in stack, f"import cycle: {' -> '.join([*stack, name])}"
        for other in edges.get(name, ()):
            visit(other, [*stack, name])

    for name in edges:
        visit(name, [])
