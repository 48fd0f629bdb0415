"""Small models for the reliability battery, and modules that record every attribute assignment."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from seqlrp.lstm import BiLSTMClassifier

#: (object, attribute name) for every ``__setattr__`` on a :class:`Recording` module (objects kept alive)
SETATTR_LOG: list[tuple[nn.Module, str]] = []


class Recording(nn.Module):
    """Mixin: records every attribute assignment on the instance (user objects must never see one)."""

    def __setattr__(self, name, value):
        SETATTR_LOG.append((self, name))
        super().__setattr__(name, value)


@contextmanager
def no_assignments(*models: nn.Module):
    """Assert on exit, also after an exception inside, that no attribute was assigned on ``models``' modules."""
    start = len(SETATTR_LOG)
    ids = {id(m) for model in models for m in model.modules()}
    try:
        yield
    finally:
        assigned = [(type(obj).__name__, name) for obj, name in SETATTR_LOG[start:] if id(obj) in ids]
        assert not assigned, f"attributes assigned on the user's modules: {assigned}"


class RecordingReLU(Recording, nn.ReLU):
    """A ReLU (the pass rule applies) that records assignments."""


class RecordingNet(Recording):
    """Conv-BN-ReLU-pool-linear: canonized by the CNN presets; the container and the ReLU record."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), RecordingReLU(),
                                      nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, classes))

    def forward(self, x):
        return self.head(self.features(x))


class RecordingText(Recording, BiLSTMClassifier):
    """The BiLSTM text classifier, recording assignments."""


class RecordingMLP(Recording):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 6), RecordingReLU(), nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()


def cnn(seed: int = 0) -> nn.Module:
    """Conv-BN-ReLU-pool-linear in float64 with non-trivial BN statistics (canonized by the presets)."""
    torch.manual_seed(seed)
    model = RecordingNet().double().eval()
    with torch.no_grad():
        bn = model.features[1]
        bn.running_mean.copy_(torch.randn(4) * 0.3)
        bn.running_var.copy_(torch.rand(4) + 0.5)
        bn.weight.copy_(torch.randn(4))
        bn.bias.copy_(torch.randn(4) * 0.2)
    return model


def text_model(seed: int = 0, cls=BiLSTMClassifier, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return cls(12, 5, 4, 3, **kw).double().eval()
