"""The LSTM-LRP preset of Arras et al. (2017): the default rules of :func:`seqlrp.explain_text`."""

from __future__ import annotations

from collections.abc import Mapping

from ..core import groups
from ..core.composites import Composite
from ..core.ops import Contraction, Product, Sum
from ..core.rules.epsilon import Epsilon
from ..core.rules.passthrough import Pass, WinnerTakesAll
from ..core.rules.products import SignalTakesAll
from .recurrent import CELL_SUM, GATE_LINEAR, GATE_PRODUCT


class ArrasLSTM(Composite):
    r"""LSTM-LRP (Arras et al. 2017): ε on every linear map and sum, signal-takes-all on every gate.

    Every linear map (the cells' gate pre-activations :data:`~seqlrp.lstm.GATE_LINEAR`, ``nn.Linear``,
    convolutions, normalizations, average pools) and every sum (the cell sum
    :math:`c_t = f \odot c_{t-1} + i \odot g`, residual adds, attention contractions) takes the ε rule

    .. math:: R_j = \frac{z_{jk}}{z_k + \epsilon\,\mathrm{sign}(z_k)} R_k
              + \mathrm{bias\_factor} \cdot \frac{b_k + \epsilon\,\mathrm{sign}(z_k)}{N} \frac{R_k}{z_k + \epsilon\,
              \mathrm{sign}(z_k)}

    (with ``bias_factor = 1`` the relevance is conserved exactly: token relevance + initial-state relevance
    == the target score); gated products (the cells' ``i ⊙ g``, ``f ⊙ c``, ``o ⊙ tanh(c)``, a model's own
    sigmoid gates) give all relevance to the signal (signal-takes-all, :data:`~seqlrp.lstm.GATE_PRODUCT`);
    max pools are winner-takes-all; activations pass.

    Parameters
    ----------
    epsilon : float
        The stabilizer ε (Arras et al.: 1e-3).
    bias_factor : float
        Share of the bias and ε redistributed to the inputs (0: absorbed, Arras et al.'s default; 1: conserving).
    rules : mapping, optional
        Overrides, read before the defaults: module types / name globs as in any composite, and the cell keys
        :data:`~seqlrp.lstm.GATE_LINEAR`, :data:`~seqlrp.lstm.CELL_SUM`, :data:`~seqlrp.lstm.GATE_PRODUCT`.

    Examples
    --------
    >>> import torch, seqlrp
    >>> model = seqlrp.lstm.BiLSTMClassifier(10, 4, 3, 2).eval()
    >>> result = seqlrp.explain_text(model, torch.tensor([[1, 2, 3]]),
    ...                              composite=seqlrp.lstm.ArrasLSTM(epsilon=1e-3, bias_factor=1.0))
    """

    def __init__(self, epsilon: float = 1e-3, bias_factor: float = 0.0, rules: Mapping | None = None):
        self.epsilon, self.bias_factor = epsilon, bias_factor
        eps = Epsilon(epsilon=epsilon, bias_factor=bias_factor)
        gate = SignalTakesAll()  # ONE rule object for the cells' gates and any gated product of the model
        defaults = {GATE_LINEAR: eps, CELL_SUM: eps, GATE_PRODUCT: gate, groups.WEIGHTED: eps,
                    groups.AVG_POOLS: eps, groups.NORMS: eps, Sum: eps, Contraction: eps, Product: gate,
                    groups.MAX_POOLS: WinnerTakesAll(), groups.ACTIVATIONS: Pass()}
        merged = dict(rules or {})
        for key, rule in defaults.items():
            merged.setdefault(key, rule)
        super().__init__(merged)
