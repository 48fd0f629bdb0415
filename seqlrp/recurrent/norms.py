r"""Views of the RMSNorm classes the recurrent families define for themselves (``MambaRMSNorm``, ...).

They compute :math:`y = \gamma \odot x / \sqrt{\overline{x^2} + \epsilon}` like ``nn.RMSNorm`` but are their own
classes (with ``variance_epsilon`` and, in RecurrentGemma, a weight stored as :math:`\gamma - 1`). Their view is
:class:`~seqlrp.core.norms.RMSNormView`'s: the root mean square held constant, so the ε rule is the identity
:math:`R_x = x \odot \frac{\gamma}{\mathrm{rms}} \odot \frac{R_y}{\mathrm{stab}(y)} \approx R_y` (Ali et al. 2022;
MambaLRP detaches the same factor).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.norms import RMSNormView
from ..core.views import DETERMINISTIC, register_view

#: the family RMSNorm classes registered so far (the recurrent presets give them their norm rule)
FAMILY_NORMS: set[type] = set()


class FamilyRMSNormView(RMSNormView):
    """An RMSNorm over the last dimension with ``weight`` and ``variance_epsilon`` (or ``eps``).

    ``offset`` is added to the stored weight (RecurrentGemma stores :math:`\\gamma - 1`). The forward runs in the
    input's dtype (the families' own forwards compute it in float32 and cast back: the same value in float32).
    """

    offset = 0.0

    def mean(self, t: Tensor) -> Tensor:
        return t.mean(-1, keepdim=True)

    def group_size(self, x: Tensor) -> int:
        return x.shape[-1]

    def eps(self, x: Tensor) -> float:
        module = self.module
        return float(getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6)))

    def weight_term(self, x: Tensor) -> Tensor | float:
        weight = self.module.weight
        if weight is None:
            return 1.0 + self.offset
        return weight.to(x.dtype) + self.offset if self.offset else weight.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        y = x * self.scale(x)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def scale(self, x: Tensor) -> Tensor:
        return self.weight_term(x) * torch.rsqrt(self.mean(x * x) + self.eps(x))


class OffsetRMSNormView(FamilyRMSNormView):
    r"""RecurrentGemma's RMSNorm: :math:`y = (1 + w) \odot x / \mathrm{rms}(x)`."""

    offset = 1.0


def register_norm(cls: type[nn.Module], offset: bool = False) -> None:
    """Give a family's RMSNorm class its view (idempotent)."""
    if cls in FAMILY_NORMS:
        return
    register_view(cls)(OffsetRMSNormView if offset else FamilyRMSNormView)
    DETERMINISTIC.add(cls)
    FAMILY_NORMS.add(cls)
