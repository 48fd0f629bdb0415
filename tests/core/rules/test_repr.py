"""A rule's repr (named in every session's coverage report) is kept with the parameters it was made from and
follows any change of them: a new value, a tensor changed in place, another tensor."""

from __future__ import annotations

import torch

from seqlrp.core.rules.epsilon import Epsilon
from seqlrp.core.rules.zbox import ZBox


class Scaled(Epsilon):
    """A rule with a tensor parameter (as a user's rule may have)."""

    name = "scaled"

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.scale = scale

    def params(self):
        return {"scale": self.scale, **super().params()}


def test_the_repr_follows_every_change_of_the_parameters():
    rule = Epsilon(epsilon=0.25)
    first = repr(rule)
    assert repr(rule) is first and "_repr" not in str(vars(rule))  # (kept, beside the rule: vars() describe it)
    rule.epsilon = 0.5
    assert repr(rule) == first.replace("0.25", "0.5")
    low = torch.zeros(1, 3, 1, 1)
    box = ZBox(low=low, high=torch.ones(1, 3, 1, 1))
    assert "low=(0.0, 0.0, 0.0)" in repr(box)
    low.sub_(2.0)  # (the rule's bound shares this tensor)
    assert "low=(-2.0, -2.0, -2.0)" in repr(box)
    scale = torch.zeros(4)
    scaled = Scaled(scale)
    assert "in [0, 0]" in repr(scaled) and repr(scaled) is repr(scaled)
    scale.add_(1.0)  # (in place: the same tensor, a new version)
    assert "in [1, 1]" in repr(scaled)
    scaled.scale = torch.full((4,), 3.0)  # (another tensor)
    assert "in [3, 3]" in repr(scaled)


def test_a_rule_that_cannot_be_weakly_referenced_or_hashed_still_has_its_repr():
    class Unhashable(Epsilon):
        __eq__ = object.__eq__
        __hash__ = None  # (a user's rule defining __eq__ only)

    rule = Unhashable(epsilon=0.5)
    assert repr(rule) == repr(rule) == repr(Epsilon(epsilon=0.5))
