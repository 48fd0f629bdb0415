"""Which canonization route runs: the module structure where it shows every fusion, else the traced graph.

The structural route must give the same canonized function and the same relevance as the traced one,
and must not be taken where a forward could call part of a sequential (``seq[0]``, ``seq[:2]``).
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
import torchvision
from torch import nn

import seqlrp
from seqlrp.cnn import EpsilonGammaBox, EpsilonPlusFlat, canonize
from seqlrp.core.copying import is_private_copy, structural_copy

from ..core.helpers import assert_unchanged, snapshot
from .helpers import randomize_batchnorm, torchvision_model

canonize_module = sys.modules["seqlrp.cnn.canonize"]
graph_module = importlib.import_module("seqlrp.cnn.graph")

STRUCTURAL = ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf", "mnasnet0_5",
              "shufflenet_v2_x0_5", "vgg11_bn"]


@pytest.fixture
def traces(monkeypatch):
    """Counts the traced-graph canonizations."""
    calls = []
    real = graph_module.canonize_graph

    def counting(model):
        calls.append(type(model).__name__)
        return real(model)

    monkeypatch.setattr(graph_module, "canonize_graph", counting)
    return calls


def traced_only(monkeypatch):
    monkeypatch.setattr(canonize_module, "structure_suffices", lambda model: False)


@pytest.mark.parametrize("name", STRUCTURAL)
def test_torchvision_families_take_the_structural_route_with_the_traced_routes_numbers(name, traces, monkeypatch):
    model = torchvision_model(name)
    before = snapshot(model)
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([3, 7])
    low, high = torch.full((1, 3, 1, 1), -3.0, dtype=torch.float64), torch.full((1, 3, 1, 1), 3.0, dtype=torch.float64)
    structural = canonize(model, example_input=x)
    ours = [seqlrp.explain(model, x, target, c) for c in (EpsilonPlusFlat(), EpsilonGammaBox(low, high))]
    assert traces == [], "the structural route must not trace"
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in structural.modules())
    assert not isinstance(structural, torch.fx.GraphModule)
    traced_only(monkeypatch)
    traced = canonize(model, example_input=x)
    theirs = [seqlrp.explain(model, x, target, c) for c in (EpsilonPlusFlat(), EpsilonGammaBox(low, high))]
    assert isinstance(traced, torch.fx.GraphModule) and len(traces) == 3
    with torch.no_grad():
        torch.testing.assert_close(structural(x), model(x), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(structural(x), traced(x), rtol=1e-12, atol=1e-14)
    for a, b in zip(ours, theirs, strict=True):
        assert a.coverage.complete and b.coverage.complete
        scale = b.relevance.abs().max()
        assert (a.relevance - b.relevance).abs().max() <= 1e-10 * scale
        torch.testing.assert_close(a.output, b.output, rtol=1e-12, atol=1e-14)
    assert_unchanged(model, before)


class _Indexing(nn.Module):
    """A forward that calls the first item of a sequential alone: its conv must stay unfused there."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head((self.block(x) + self.block[0](x)).mean((2, 3)))


class _Slicing(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.block[:1](x).mean((2, 3)))


@pytest.mark.parametrize("cls", [_Indexing, _Slicing])
def test_a_forward_that_calls_part_of_a_sequential_is_traced(cls, traces):
    model = randomize_batchnorm(cls()).double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    assert not canonize_module.structure_suffices(model)
    canonical = canonize(model, example_input=x)
    assert traces == [cls.__name__]
    with torch.no_grad():
        torch.testing.assert_close(canonical(x), model(x), rtol=1e-10, atol=1e-12)


def test_hooks_or_patched_forwards_on_containers_send_the_model_to_the_trace():
    model = torchvision_model("mobilenet_v3_small")
    assert canonize_module.structure_suffices(model)
    block = model.features[1]
    handle = block.register_forward_pre_hook(lambda module, args: None)
    assert not canonize_module.structure_suffices(model)
    handle.remove()
    block.forward = lambda x: x  # (an instance attribute shadowing the class's forward)
    assert not canonize_module.structure_suffices(model)
    del block.forward
    assert canonize_module.structure_suffices(model)

    class Subclass(type(model)):  # a user's subclass may compute something else: exact classes only
        pass

    model.__class__ = Subclass
    assert not canonize_module.structure_suffices(model)


class _Reversed(nn.Sequential):
    """Sequential.forward iterates ``self``: a subclass changing the iteration changes the forward."""

    def __iter__(self):
        return iter(list(self._modules.values())[::-1])


def test_a_sequential_subclass_with_its_own_iteration_is_traced(traces):
    # (listed conv, BN, ReLU, so adjacent in the module structure; run ReLU, BN, conv)
    block = _Reversed(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.ReLU())
    model = randomize_batchnorm(nn.Sequential(block, nn.Flatten(), nn.Linear(3 * 16, 2))).double().eval()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    assert not canonize_module.structure_suffices(model)
    canonical = canonize(model, example_input=x)
    with torch.no_grad():
        torch.testing.assert_close(canonical(x), model(x), rtol=1e-10, atol=1e-12)


def test_wrapping_a_private_copy_in_place_only_when_nothing_is_shared():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Flatten(), nn.Linear(4 * 36, 2)))
    copy = structural_copy(model)
    assert is_private_copy(copy, model)
    assert not is_private_copy(model, model)
    copy._modules["2"] = model[2]  # one user module inside the copy: not private
    assert not is_private_copy(copy, model)


# ------------------------------------------------------------------------------------------------ timm
TIMM_STRUCTURAL = [("test_efficientnet", {}), ("efficientnet_lite0", {"drop_path_rate": 0.2}),
                   ("mobilenetv3_small_050", {}), ("efficientnet_b0", {}), ("efficientnetv2_rw_t", {})]


def _relevances(model, x, target):
    low, high = torch.full((1, 3, 1, 1), -3.0, dtype=x.dtype), torch.full((1, 3, 1, 1), 3.0, dtype=x.dtype)
    return [seqlrp.explain(model, x, target, c) for c in (EpsilonPlusFlat(), EpsilonGammaBox(low, high))]


def _assert_same_explanations(ours, theirs):
    for a, b in zip(ours, theirs, strict=True):
        assert a.coverage.complete and b.coverage.complete
        assert (a.relevance - b.relevance).abs().max() <= 1e-10 * b.relevance.abs().max()
        torch.testing.assert_close(a.output, b.output, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("name", "kwargs"), TIMM_STRUCTURAL, ids=[n for n, _ in TIMM_STRUCTURAL])
def test_timm_efficientnets_take_the_structural_route_with_the_traced_routes_numbers(name, kwargs, traces,
                                                                                     monkeypatch):
    """timm's EfficientNet / MobileNetV3 blocks (residual adds, DropPath, BatchNormAct2d split, SE) are fused from
    their module structure: no trace, the traced route's function and relevance (1e-10, float64, both presets)."""
    timm = pytest.importorskip("timm")
    from benchmarks.timm_models import build

    model, _ = build(name, size=48, **kwargs)
    before = snapshot(model)
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([3, 7])
    structural = canonize(model, example_input=x, rtol=1e-10)
    ours = _relevances(model, x, target)
    assert traces == [], "the structural route must not trace"
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in structural.modules())
    assert not isinstance(structural, torch.fx.GraphModule)
    assert isinstance(structural, type(model))
    traced_only(monkeypatch)
    traced = canonize(model, example_input=x)
    theirs = _relevances(model, x, target)
    assert isinstance(traced, torch.fx.GraphModule) and len(traces) == 3
    with torch.no_grad():
        torch.testing.assert_close(structural(x), model(x), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(structural(x), traced(x), rtol=1e-12, atol=1e-14)
    _assert_same_explanations(ours, theirs)
    assert_unchanged(model, before)
    assert any(type(m).__module__.startswith("timm.models") for m in structural.modules())
    del timm


def test_timm_blocks_are_traced_when_their_forward_may_not_call_children_whole(traces):
    """A hook on a block, a forward replaced on a block, gradient checkpointing, a block subclass or another timm
    version: the structure does not show the dataflow, so the model is traced (and canonized exactly)."""
    timm = pytest.importorskip("timm")
    from benchmarks.timm_models import build

    timm_blocks = importlib.import_module("seqlrp.cnn.timm_blocks")
    canonizer = sys.modules["seqlrp.cnn.canonizer"]
    model, x = build("test_efficientnet", size=32)

    def structural():
        run = canonize_module.Run(seqlrp.cnn.DEFAULT_CANONIZERS)
        return canonize_module.structure_suffices(canonize_module._split(model, run))

    assert structural()
    block = next(m for m in model.modules() if type(m).__name__ == "InvertedResidual")
    handle = block.register_forward_hook(lambda module, args, out: None)
    assert not structural()
    handle.remove()
    block.forward = lambda x: x
    assert timm_blocks.timm_fusion_pairs(block) is not None and not canonizer.calls_children_whole(block)
    assert not structural()
    del block.forward
    assert structural()
    model.set_grad_checkpointing(True)
    assert timm_blocks.timm_fusion_pairs(model) is None
    canonical = canonize(model, example_input=x, rtol=1e-10)
    assert traces == ["EfficientNet"]
    model.set_grad_checkpointing(False)

    class Subclass(type(block)):
        pass

    assert timm_blocks.timm_fusion_pairs(block) is not None
    block.__class__ = Subclass
    assert timm_blocks.timm_fusion_pairs(block) is None
    block.__class__ = Subclass.__mro__[1]
    version = timm.__version__
    try:
        timm.__version__ = "1.1.0"
        assert timm_blocks.timm_fusion_pairs(block) is None
    finally:
        timm.__version__ = version
    with torch.no_grad():
        torch.testing.assert_close(canonical(x), model(x), rtol=1e-10, atol=1e-12)


def test_timm_structural_route_follows_edits_of_the_blocks():
    """The blocks keep their own forward: an edited ``has_skip`` (the residual add dropped) is followed, and the
    explanation equals that of a fresh deep copy of the edited model."""
    pytest.importorskip("timm")
    import copy

    from benchmarks.timm_models import build

    model, x = build("mobilenetv3_small_050", size=32)
    block = next(m for m in model.modules() if getattr(m, "has_skip", False))
    first = seqlrp.explain(model, x, 1, EpsilonPlusFlat())
    block.has_skip = False
    edited = seqlrp.explain(model, x, 1, EpsilonPlusFlat())
    fresh = seqlrp.explain(copy.deepcopy(model), x, 1, EpsilonPlusFlat())
    with torch.no_grad():
        torch.testing.assert_close(edited.output, model(x), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(edited.output, first.output)
    torch.testing.assert_close(edited.relevance, fresh.relevance, rtol=1e-12, atol=1e-12)


def test_the_split_stage_copies_only_the_paths_to_the_modules_it_replaces():
    """``_split``: a new object for each module above a replaced one (or above a wrapper, dropped as structural
    copies drop it), the user's own object everywhere else; a module used twice stays one module; the user's
    containers are untouched."""
    frozen = torchvision.ops.misc.FrozenBatchNorm2d(4)  # (a split-stage class: becomes Sequential(bn))
    shared = nn.ReLU()
    left = nn.Sequential(nn.Conv2d(4, 4, 1), frozen, shared)
    right = nn.Sequential(nn.Conv2d(4, 4, 1), shared)
    wrapped = nn.Sequential(nn.DataParallel(nn.Conv2d(4, 4, 1)))
    model = nn.Sequential(left, right, wrapped).eval()
    before = {id(m): dict(m._modules) for m in model.modules()}
    run = canonize_module.Run(seqlrp.cnn.canonizers.DEFAULT_CANONIZERS)
    work = canonize_module._split(model, run)
    assert work is not model and work[0] is not left and work[2] is not wrapped  # (paths to changes: new)
    assert work[1] is right and work[0][0] is left[0] and work[0][2] is shared  # (unchanged: the user's)
    assert type(work[0][1]) is nn.Sequential and work[0][1] is not frozen
    assert type(work[2][0]) is nn.Conv2d and work[2][0] is wrapped[0].module  # (the wrapper dropped)
    assert {id(m): dict(m._modules) for m in model.modules()} == before
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(work(x), model(x), rtol=0, atol=0)
    untouched = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU()).eval()
    assert canonize_module._split(untouched, run) is untouched  # (nothing to split: the model itself)
