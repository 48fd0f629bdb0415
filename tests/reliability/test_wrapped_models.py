"""Wrapped models (torch.compile, DataParallel, DDP) are explained through their inner module and never
written through; no explainer assigns an attribute on any user object, on success or on failure."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

import seqlrp
from seqlrp.cnn import EpsilonGammaBox, EpsilonPlusFlat

from ..core.helpers import untouched
from .models import RecordingMLP, RecordingText, cnn, mlp, no_assignments, text_model

X = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
IDS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]])
LENGTHS = torch.tensor([4, 3])


def image_explainers():
    return {
        "explain EpsilonPlusFlat": lambda m, x: seqlrp.explain(m, x, composite=EpsilonPlusFlat()),
        "explain EpsilonGammaBox": lambda m, x: seqlrp.explain(m, x, composite=EpsilonGammaBox(-3.0, 3.0)),
        "canonize": lambda m, x: seqlrp.cnn.canonize(m, example_input=x),
        "gradient": seqlrp.baselines.gradient,
        "gradient_x_input": seqlrp.baselines.gradient_x_input,
        "guided_backprop": seqlrp.baselines.guided_backprop,
    }


def text_explainers():
    return {
        "explain_text": lambda m: seqlrp.explain_text(m, IDS, lengths=LENGTHS),
        "explain_text unfused": lambda m: seqlrp.explain_text(m, IDS, lengths=LENGTHS, fused=False),
        "text_gradient": lambda m: seqlrp.baselines.text_gradient(m, IDS, lengths=LENGTHS),
        "text_gradient_x_input": lambda m: seqlrp.baselines.text_gradient_x_input(m, IDS, lengths=LENGTHS),
    }


@pytest.mark.parametrize("name", list(image_explainers()))
def test_compiled_model_is_explained_and_never_written_through(name):
    model = cnn()
    keys = list(model.state_dict())
    compiled = torch.compile(model)
    reference = image_explainers()[name](model, X)
    with untouched(model), no_assignments(model):
        result = image_explainers()[name](compiled, X)
    assert list(model.state_dict()) == keys  # (was: '_orig_mod.*' keys: checkpoints no longer loaded)
    if isinstance(result, nn.Module):  # canonize: the canonical model of the inner module
        assert not any("_orig_mod" in k for k in result.state_dict())
        torch.testing.assert_close(result(X), reference(X), rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(result.relevance, reference.relevance, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(text_explainers()))
def test_compiled_text_model_is_explained_and_never_written_through(name):
    model = text_model(cls=RecordingText)
    reference = text_explainers()[name](model)
    compiled = torch.compile(model)  # (torch.compile itself marks the module: before the snapshot)
    with untouched(model), no_assignments(model):
        result = text_explainers()[name](compiled)
    torch.testing.assert_close(result.token_relevance, reference.token_relevance, rtol=1e-12, atol=1e-12)


def test_plain_gradient_after_explaining_a_compiled_model_is_a_gradient():
    model = mlp()
    x = torch.randn(3, 4, dtype=torch.float64)
    before = seqlrp.baselines.gradient(model, x, target=1).relevance
    seqlrp.explain(torch.compile(model), x, composite=seqlrp.EpsilonEverywhere(0.3))
    x_grad = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x_grad)[:, 1].sum(), x_grad)  # the user's own gradient
    torch.testing.assert_close(grad, before, rtol=0, atol=0)
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_compiled_model_that_fails_is_not_written_through():
    model = cnn()
    keys = list(model.state_dict())
    compiled = torch.compile(model)
    refused = pytest.raises(seqlrp.NoRuleError, match=r"'features.1' \(BatchNorm2d\).*canonize")
    with untouched(model), no_assignments(model), refused:
        seqlrp.explain(compiled, X, composite={nn.Conv2d: "zero"})  # a plain composite does not canonize
    assert list(model.state_dict()) == keys


def test_in_place_compiled_module_is_explained_by_its_rules_not_by_the_compiled_call():
    model, plain = mlp(), mlp()
    model.compile()  # sets model._compiled_call_impl, bound to the user's object
    x = torch.randn(3, 4, dtype=torch.float64)
    composite = seqlrp.EpsilonEverywhere(0.5)
    with untouched(model):
        result = seqlrp.explain(model, x, composite=composite)
    expected = seqlrp.explain(plain, x, composite=composite)
    torch.testing.assert_close(result.relevance, expected.relevance, rtol=1e-12, atol=1e-12)
    assert result.coverage.rules  # the rules ran (a compiled call would have left only the gradient)


def test_compiled_submodule_and_data_parallel_are_unwrapped():
    inner = mlp()
    outer = nn.Sequential(torch.compile(inner[:2]), inner[2]).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    expected = seqlrp.explain(inner, x, composite=seqlrp.ZeroEverywhere())
    wrappers = (outer, nn.DataParallel(inner), nn.DataParallel(torch.compile(inner)))  # (built before the snapshot)
    for wrapped in wrappers:
        with untouched(inner), no_assignments(inner):
            result = seqlrp.explain(wrapped, x, composite=seqlrp.ZeroEverywhere())
        torch.testing.assert_close(result.relevance, expected.relevance, rtol=1e-12, atol=1e-12)
        assert all("_orig_mod" not in name and not name.startswith("module") for name in result.coverage.rules)


def test_distributed_data_parallel_is_unwrapped(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = mlp()
        wrapped = nn.parallel.DistributedDataParallel(model)
        x = torch.randn(3, 4, dtype=torch.float64)
        expected = seqlrp.explain(mlp(), x)
        with untouched(model):
            result = seqlrp.explain(wrapped, x)
        torch.testing.assert_close(result.relevance, expected.relevance, rtol=1e-12, atol=1e-12)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", list(image_explainers()))
def test_no_attribute_is_assigned_on_user_objects_on_success_or_failure(name):
    explain = image_explainers()[name]
    model = cnn()
    with no_assignments(model), untouched(model):
        explain(model, X)
    with no_assignments(model), untouched(model), pytest.raises((ValueError, TypeError, RuntimeError)):
        explain(model, X[:, :2])  # two channels for a three-channel model: the forward fails


@pytest.mark.parametrize("name", list(text_explainers()))
def test_no_attribute_is_assigned_on_user_text_models(name):
    model = text_model(cls=RecordingText)
    with no_assignments(model), untouched(model):
        text_explainers()[name](model)
    with no_assignments(model), untouched(model), pytest.raises(ValueError, match="only 12 rows"):
        seqlrp.explain_text(model, torch.tensor([[1, 99]]))


def test_no_attribute_is_assigned_when_the_forward_raises_mid_way():
    class Exploding(RecordingMLP):
        def forward(self, x):
            self.fc1(x)
            raise RuntimeError("boom in the middle of forward")

    model = Exploding().double().eval()
    with no_assignments(model), untouched(model), pytest.raises(ValueError, match="boom in the middle"):
        seqlrp.explain(model, torch.randn(2, 4, dtype=torch.float64))


def test_user_forward_that_assigns_attributes_writes_to_the_copy_only():
    class Caching(RecordingMLP):
        def forward(self, x):
            self.last_input = x  # user code assigning on self: must land on seqlrp's copy
            return super().forward(x)

    model = Caching().double().eval()
    with no_assignments(model), untouched(model):
        seqlrp.explain(model, torch.randn(2, 4, dtype=torch.float64))
        seqlrp.baselines.gradient(model, torch.randn(2, 4, dtype=torch.float64))
    assert "last_input" not in model.__dict__


def test_global_state_is_left_as_it_was():
    model, text = cnn(), text_model()
    rng, grad_mode, dtype = torch.get_rng_state(), torch.is_grad_enabled(), torch.get_default_dtype()
    with torch.no_grad():  # users often call explainers under no_grad: they still work
        seqlrp.explain(model, X, composite=EpsilonPlusFlat())
        seqlrp.explain(model, X, composite=EpsilonGammaBox(-3.0, 3.0))
        seqlrp.explain_text(text, IDS, lengths=LENGTHS)
    assert torch.equal(rng, torch.get_rng_state()), "explain consumed the user's random stream"
    assert torch.is_grad_enabled() == grad_mode and torch.get_default_dtype() == dtype
    assert not torch.nn.modules.module._global_forward_hooks
