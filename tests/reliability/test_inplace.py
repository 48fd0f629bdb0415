"""In-place ops on a wrapped layer's output give the relevance of their out-of-place twin; an in-place change
of a layer's input after it ran is an error naming the layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seqlrp
from seqlrp.cnn import EpsilonGammaBox, EpsilonPlusFlat

from ..core.helpers import untouched

FORWARDS = {
    "F.relu(inplace=True)": (lambda m, x: m.head(F.relu(m.conv(x), inplace=True)),
                             lambda m, x: m.head(F.relu(m.conv(x)))),
    "conv(x).relu_()": (lambda m, x: m.head(m.conv(x).relu_()), lambda m, x: m.head(torch.relu(m.conv(x)))),
    "y += x": (lambda m, x: m.head(_iadd(m.conv(x), x)), lambda m, x: m.head(m.conv(x) + x)),
    "relu module output clamp_": (lambda m, x: m.head(m.act(m.conv(x)).clamp_(max=0.5)),
                                  lambda m, x: m.head(torch.clamp(m.act(m.conv(x)), max=0.5))),
    "block result += input": (lambda m, x: m.head(_iadd(m.block(x), x)), lambda m, x: m.head(m.block(x) + x)),
}


def _iadd(y, x):
    y += x
    return y


class Net(nn.Module):
    def __init__(self, forward):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.act = nn.ReLU()
        self.block = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))  # canonized: a fused conv ends it
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
        self._forward = forward

    def forward(self, x):
        return self._forward(self, x)


def twins(case):
    torch.manual_seed(0)
    inplace, outofplace = FORWARDS[case]
    a = Net(inplace).double().eval()
    b = Net(outofplace).double().eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        a.block[1].running_var.uniform_(0.5, 2)
        b.block[1].running_var.copy_(a.block[1].running_var)
    return a, b


@pytest.mark.filterwarnings("ignore::seqlrp.CoverageWarning")  # (the functional '+' of both twins)
@pytest.mark.parametrize("composite", [EpsilonPlusFlat, lambda: EpsilonGammaBox(-3.0, 3.0)], ids=["EPF", "EGB"])
@pytest.mark.parametrize("case", list(FORWARDS))
def test_in_place_ops_on_layer_outputs_equal_their_out_of_place_twin(case, composite):
    a, b = twins(case)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with untouched(a):
        result = seqlrp.explain(a, x, target=1, composite=composite())
    expected = seqlrp.explain(b, x, target=1, composite=composite())
    torch.testing.assert_close(result.output, expected.output, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.relevance, expected.relevance, rtol=1e-12, atol=1e-12)


def test_in_place_change_of_a_layer_input_after_it_ran_names_the_layer():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2, self.fc3 = nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3), nn.Linear(5, 3)

        def forward(self, x):
            h = self.act(self.fc1(x))
            out = self.fc2(h)
            h.mul_(0.5)  # fc2 has already read h
            return out + self.fc3(h)

    model = Net().double().eval()
    with untouched(model), pytest.raises(RuntimeError, match=r"input of layer 'fc2' \(Linear\) was changed by an "
                                                               r"in-place operation.*x = x \+ y"):
        seqlrp.explain(model, torch.randn(2, 4, dtype=torch.float64))
