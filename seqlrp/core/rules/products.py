"""Signal-takes-all for gate ⊙ signal products (LSTM/GRU)."""

from __future__ import annotations

from .base import Rule


class SignalTakesAll(Rule):
    r"""Gate ⊙ signal: all relevance to the signal, none to the gate (Arras et al. 2017).

    .. math::
        R_{\text{signal}} = R_{\text{gate} \odot \text{signal}}, \qquad R_{\text{gate}} = 0

    The gate only scales how much of the signal passes; it carries no information of its own
    about the input in this view.
    """

    name = "signal_takes_all"

    kinds = frozenset({"product"})

    def params(self):
        return {}

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        signal = inputs[1]
        return (None, relevance if relevance.shape == signal.shape else relevance.sum_to_size(signal.shape))
