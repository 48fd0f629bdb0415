"""Canonization: a NEW model computing the same function, on which the LRP rules are meaningful.

Batch norms are fused into the neighbouring layers (:mod:`seqlrp.cnn.batchnorm`: the algebra) by canonizers,
one object per pattern (:mod:`seqlrp.cnn.canonizer`: the protocol and the stages; :mod:`seqlrp.cnn.canonizers`:
the patterns), held by the composite as data:

* Conv/Linear -> BatchNorm pairs fused into new layers: ``w' = w γ/s``, ``b' = (b - μ) γ/s + β``,
  ``s = sqrt(var + eps)``;
* torchvision ResNets and DenseNets rebuilt (:mod:`seqlrp.cnn.rebuilt`): explicit sums and concatenations,
  ``BN -> ReLU -> Conv`` as ``ThreshReLU -> TensorBiasedConv2d``;
* any other batch norm kept as a per-channel affine layer;
* timm's batch norms with their activation inside split into plain modules first.

The route: the split stage; then, where the module structure shows every dataflow, the structural walk
(no trace: 10-17 ms instead of 40-55 ms on the small torchvision models; timm's EfficientNet-Lite0 17 ms
instead of 44 ms); otherwise the traced graph (every BN pattern, wherever it is); the structural walk again,
as a fallback, if the model does not trace.

The user's model is never modified, not even temporarily: new layers get new tensors, unchanged
layers are structural copies sharing their parameters, and verification runs on copies.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..core.checks import check_eval_mode, mode_dependent
from ..core.copying import modules, record_outputs, structural_copy, unwrap, with_children
from . import graph
from .batchnorm import (
    AFFINES,
    BN,
    NAMES,
    NORMS,
    CanonizationError,
    CanonizationWarning,
    ModuleNames,
    affines,
    bn_affine,
    fuse,
    threshold,
    threshold_and_fuse,
)
from .canonizer import CURRENT, Canonizer, Place, Run, check_canonizers, structure_suffices, walk
from .canonizers import DEFAULT_CANONIZERS
from .rebuilt import Concat

# (the names this module had before the algebra and the patterns moved out of it)
_bn_affine, _threshold = bn_affine, threshold
__all__ = ["CanonizationError", "CanonizationWarning", "Concat", "canonize", "fuse", "structure_suffices",
           "threshold_and_fuse"]


def canonize(model: nn.Module, *, verify: bool = True, example_input: Tensor | None = None,
             rtol: float = 1e-6, canonizers: Sequence[Canonizer] | None = None) -> nn.Module:
    """A new model computing the same function as ``model``, on which LRP rules are meaningful.

    Parameters
    ----------
    model : nn.Module
        In eval mode (batch norm must use its running statistics). Not modified.
    verify : bool
        Compare both models in float64 on ``example_input`` (or a random input of the right shape)
        and raise :class:`CanonizationError`, naming the first differing module, if the max abs
        logit difference exceeds ``rtol`` times the largest logit.
    example_input : Tensor, optional
        Input for the verification (default: ``randn(2, C, 64, 64)`` for the first conv's ``C``).
    canonizers : sequence of Canonizer, optional
        The patterns, in order (default :data:`seqlrp.cnn.canonizers.DEFAULT_CANONIZERS`; a composite passes
        its own).

    Returns
    -------
    nn.Module
        The canonized model (shares the parameters of the layers it did not change).
    """
    run = Run(DEFAULT_CANONIZERS if canonizers is None else check_canonizers(canonizers),
              None if example_input is None else example_input.detach())
    model = unwrap(model)
    try:
        check_eval_mode(model)
    except RuntimeError as error:
        raise CanonizationError(str(error)) from None
    token = CURRENT.set(run)
    try:
        work = _split(model, run)
        norms = [m for m in modules(work) if isinstance(m, BN)]
        if not norms:
            canonical = structural_copy(work)  # nothing to fuse
        else:
            known = AFFINES.set(affines([m for m in norms if type(m) in NORMS]))  # (all at once: ~1 ms less)
            try:
                canonical = _canonize_with_norms(work, model)
            finally:
                AFFINES.reset(known)
    finally:
        CURRENT.reset(token)
    _mark_eval(canonical)
    if verify:
        _verify(model, canonical, example_input, rtol)
    return canonical


def _split(model: nn.Module, run: Run) -> nn.Module:
    """``model`` itself when no split-stage canonizer rebuilds any of its modules; else a copy in which each module
    they rebuild is replaced (a module used twice stays one module used twice). Only the modules on a path to a
    replaced one are copied (and those above a wrapper, which is dropped): the rest are the user's, which the later
    stages only read."""
    canonizers = run.stage["split"]
    place = Place()

    def rebuilt(module: nn.Module) -> nn.Module | None:
        for canonizer in canonizers:
            new = canonizer.rebuild(module, place)
            if new is not None:
                return new
        return None

    if not canonizers:
        return model
    names = NAMES.set(ModuleNames(model, type(model).__name__))
    try:
        done = {}  # id of a user's module -> its rebuild (each module offered once)
        for module in modules(model):
            new = rebuilt(module)
            if new is not None:
                done[id(module)] = new
        return _replaced(model, done, {}) if done else model
    finally:
        NAMES.reset(names)


def _replaced(module: nn.Module, done: dict[int, nn.Module], memo: dict[int, nn.Module]) -> nn.Module:
    """``module`` (unwrapped) with the modules of ``done`` (by id) in place of the user's: a shallow copy with new
    children where any descendant changed, ``module`` itself where none did (``memo``: one result per module)."""
    module = unwrap(module)
    key = id(module)
    if key in done:
        return done[key]
    if key in memo:
        return memo[key]
    children = module._modules
    changed = None
    for name, child in children.items():
        if child is None:
            continue
        new = _replaced(child, done, memo)
        if new is not child:
            if changed is None:
                changed = dict(children)
            changed[name] = new
    result = module if changed is None else with_children(module, changed)
    memo[key] = result
    return result


def _canonize_with_norms(model: nn.Module, user: nn.Module) -> nn.Module:
    """The structural walk where the module structure shows every fusion; otherwise the traced graph; the
    structural walk again, as a fallback, if the model does not trace. ``model`` is the user's model ``user`` or a
    copy of it; modules of either are never edited."""
    structural = _structural(model) if structure_suffices(model) else None
    if structural is not None and not any(isinstance(m, BN) for m in modules(structural)):
        return structural
    try:
        return graph.canonize_graph(model)
    except graph.TraceError as error:
        reason = str(error)
    canonical = structural if structural is not None else _structural(model)
    kept = _fallback(canonical, model, user)
    if kept:
        names = [name for name, m in canonical.named_modules() if id(m) in kept]
        warnings.warn(
            f"canonization could not follow the forward of {type(user).__name__} ({reason[:300]}); from its module "
            f"structure, the batch norm(s) {names} are kept as per-channel affine layers (ChannelAffine) instead of "
            "fused into their neighbouring layers, so the relevance can differ from that of the same model written "
            "plainly. Make the forward traceable by torch.fx, or fuse them by hand",
            CanonizationWarning, stacklevel=4)
    left = [name for name, m in canonical.named_modules() if isinstance(m, BN)]
    if left:
        raise CanonizationError(
            f"could not fuse the batch norm(s) {left}: torch.fx could not trace the model ({reason[:300]}), and "
            "from the module structure only Conv/Linear -> BatchNorm pairs inside sequentials that nothing calls "
            "in part and torchvision ResNet/DenseNet blocks are fused, and only exact BatchNorm classes are kept as "
            "per-channel affine layers; make the forward traceable or fuse them by hand")
    return canonical


def _fallback(canonical: nn.Module, *models: nn.Module) -> set[int]:
    """Offer the children of the canonized copy to the fallback-stage canonizers; replaced in place (the same
    function wherever and however they are called). Modules of ``models`` are never edited. Returns the ids of
    the new modules."""
    new_ids: set[int] = set()
    canonizers = CURRENT.get().stage["fallback"]
    users = {id(m) for model in models for m in model.modules()}
    place = Place()
    for module in list(canonical.modules()):
        if id(module) in users:
            continue
        for name, child in list(module._modules.items()):
            if child is None:
                continue
            for canonizer in canonizers:
                new = canonizer.rebuild(child, place)
                if new is not None:
                    module.__dict__["_modules"][name] = new
                    new_ids.add(id(new))
                    break
    return new_ids


def _structural(model: nn.Module) -> nn.Module:
    """:func:`~seqlrp.cnn.canonizer.walk` with the model's qualified names at hand for messages."""
    names = NAMES.set(ModuleNames(model, type(model).__name__))
    try:
        return walk(model)
    finally:
        NAMES.reset(names)


def _mark_eval(canonical: nn.Module) -> None:
    """Eval flags on the new modules, written into their ``__dict__``; copies of the user's own classes
    keep their flags (their forward may read ``self.training``)."""
    for module in modules(canonical):
        if type(module).__module__.startswith(("seqlrp.", "torch.nn.", "torch.fx.")) and not mode_dependent(module):
            module.__dict__["training"] = False


_example = graph.example_input


def _float64_outputs(model: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Run a structural copy of ``model`` in float64; record module outputs by qualified name."""
    work = structural_copy(model)
    params = {k: v.detach().double() if v.is_floating_point() else v
              for k, v in list(work.named_parameters()) + list(work.named_buffers())}
    outputs = record_outputs(work, select=lambda name, module: bool(name))
    with torch.no_grad():
        out = torch.func.functional_call(work, params, (x.double(),))
    return out, outputs


def _verify(model: nn.Module, canonical: nn.Module, example_input: Tensor | None, rtol: float) -> None:
    x = _example(model) if example_input is None else example_input.detach()
    try:
        reference, ref_outputs = _float64_outputs(model, x)
    except RuntimeError as error:
        raise CanonizationError(f"verification failed: the model's forward on an input of shape {tuple(x.shape)} "
                                f"raised {type(error).__name__}: {error} (pass example_input= of the right shape)") \
            from None
    ours, our_outputs = _float64_outputs(canonical, x)
    if ours.shape != reference.shape:
        raise CanonizationError(f"canonized output shape {tuple(ours.shape)} != original {tuple(reference.shape)}")
    diff = float((ours - reference).abs().max())
    scale = max(float(reference.abs().max()), 1e-30)
    if not math.isfinite(diff) or diff > rtol * scale:
        first = next((name for name, value in our_outputs.items() if name in ref_outputs
                      and isinstance(value, Tensor) and isinstance(ref_outputs[name], Tensor)
                      and ref_outputs[name].shape == value.shape
                      and float((ref_outputs[name] - value).abs().max()) > rtol * max(float(value.abs().max()), 1e-30)),
                     None)
        raise CanonizationError(f"the canonized model differs from the original: max |logit diff| {diff:.3e} "
                                f"(max |logit| {scale:.3e}); first differing module: {first!r}")
