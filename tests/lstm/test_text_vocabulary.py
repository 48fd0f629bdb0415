"""explain_text speaks explain's vocabulary: composite= (default ArrasLSTM), the old keywords deprecated."""

from __future__ import annotations

import warnings

import pytest
import torch

import seqlrp
from seqlrp.core.rules.epsilon import Epsilon
from seqlrp.lstm import GATE_LINEAR, ArrasLSTM

from .models import make

IDS, LENGTHS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]]), torch.tensor([4, 3])


def _model():
    return make("lstm").double()


def test_default_is_arras_and_composite_equals_the_old_keywords():
    model = _model()
    default = seqlrp.explain_text(model, IDS, lengths=LENGTHS)
    explicit = seqlrp.explain_text(model, IDS, lengths=LENGTHS, composite=ArrasLSTM(epsilon=1e-3, bias_factor=0.0))
    assert torch.equal(default.embedding_relevance, explicit.embedding_relevance)
    with pytest.warns(DeprecationWarning, match=r"composite=seqlrp.lstm.ArrasLSTM"):
        old = seqlrp.explain_text(model, IDS, lengths=LENGTHS, epsilon=1e-6, bias_factor=1.0)
    new = seqlrp.explain_text(model, IDS, lengths=LENGTHS, composite=ArrasLSTM(epsilon=1e-6, bias_factor=1.0))
    assert torch.equal(old.embedding_relevance, new.embedding_relevance)
    assert not torch.equal(new.embedding_relevance, default.embedding_relevance)  # (the parameters are used)
    # bias_factor=1 conserves: tokens + initial states == the target logit
    total = new.token_relevance.sum(1) + new.initial_state_relevance
    assert torch.allclose(total, new.output.gather(1, new.target[:, None])[:, 0], atol=1e-4)


def test_a_mapping_overrides_the_arras_defaults_like_the_old_rules_keyword():
    model = _model()
    overrides = {GATE_LINEAR: Epsilon(epsilon=0.5)}
    with pytest.warns(DeprecationWarning, match=r"rules="):
        old = seqlrp.explain_text(model, IDS, lengths=LENGTHS, rules=overrides)
    new = seqlrp.explain_text(model, IDS, lengths=LENGTHS, composite=overrides)
    assert torch.equal(old.embedding_relevance, new.embedding_relevance)
    assert "epsilon=0.5" in str(new.coverage)


def test_the_deprecation_warning_points_at_the_callers_line_and_new_calls_are_silent():
    model = _model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seqlrp.explain_text(model, IDS, lengths=LENGTHS, bias_factor=1.0)
    (warning,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert warning.filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seqlrp.explain_text(model, IDS, lengths=LENGTHS, composite=ArrasLSTM(bias_factor=1.0))


def test_composite_and_old_keywords_together_are_refused():
    with pytest.raises(TypeError, match="either composite= or the deprecated epsilon="):
        seqlrp.explain_text(_model(), IDS, lengths=LENGTHS, composite=ArrasLSTM(), epsilon=1e-3)
    with pytest.raises(TypeError, match="composite must be a Composite or a mapping"):
        seqlrp.explain_text(_model(), IDS, lengths=LENGTHS, composite="epsilon")


def test_attribution_passes_its_composite_to_text_models():
    model = _model()
    attribution = seqlrp.Attribution(model, ArrasLSTM(bias_factor=1.0))
    relevance = attribution.attribute(IDS, target=[0, 1], additional_forward_args=(LENGTHS,))
    expected = seqlrp.explain_text(model, IDS, torch.tensor([0, 1]), ArrasLSTM(bias_factor=1.0), lengths=LENGTHS)
    assert torch.equal(relevance, expected.token_relevance)
