"""Fixtures shared by the command-line tests."""

from __future__ import annotations

import pytest


@pytest.fixture()
def captured(monkeypatch):
    """The explanations a command hands to its report: ``(method -> explanation, index)`` per example."""
    from seqlrp.viz import Report

    seen = []
    original = Report.add_comparison

    def add_comparison(self, explanations, index, *args, **kwargs):
        seen.append((dict(explanations), index))
        return original(self, explanations, index, *args, **kwargs)

    monkeypatch.setattr(Report, "add_comparison", add_comparison)
    return seen
