r"""Views of normalization layers (LayerNorm, GroupNorm, RMSNorm): linear once the scale is held constant.

Ali et al. (2022, "XAI for Transformers: Better Explanations through Conservative Propagation") treat
the normalizing standard deviation as a constant. A normalization then is a linear map of its input
plus a bias:

.. math::
    y = \frac{\gamma}{\sigma} \odot (x - \mu(x)) + \beta = J x + \beta,
    \qquad J = \mathrm{diag}(\gamma / \sigma)\,(I - \tfrac{1}{N} \mathbf{1}\mathbf{1}^\top)

within each normalized group of ``N`` elements (RMSNorm does not centre: :math:`J = \mathrm{diag}(\gamma /
\mathrm{rms})`). The ε rule on this map (:class:`~seqlrp.core.rules.epsilon.Epsilon`, kind ``"norm"``)
gives :math:`R_x = x \odot J^\top (R / \mathrm{stab}(y))`: relevance follows each input's share of the
centred value, and the bias :math:`\beta` absorbs its own (or ``bias_factor`` spreads it).
"""

from __future__ import annotations

import abc
import copy

import torch
from torch import Tensor, nn

from .views import View


class NormView(View, abc.ABC):
    """A normalization over groups of elements, linearized with its scale held constant."""

    kind = "norm"
    #: whether the layer subtracts the group mean (LayerNorm, GroupNorm) or not (RMSNorm)
    center = True

    def output_nonnegative(self, inputs_nonnegative):
        return False

    # the group structure (subclasses) --------------------------------------------------------
    @abc.abstractmethod
    def mean(self, t: Tensor) -> Tensor:
        """The mean of ``t`` over each normalized group, broadcastable to ``t``."""

    @abc.abstractmethod
    def group_size(self, x: Tensor) -> int:
        """The number of elements normalized together."""

    def weight_term(self, x: Tensor) -> Tensor | float:
        """The elementwise weight γ shaped to broadcast against ``x`` (1 when the layer has none)."""
        weight = self.module.weight
        return 1.0 if weight is None else weight

    def bias_shape(self, bias: Tensor, out: Tensor) -> Tensor:
        return bias

    # what the ε rule needs ---------------------------------------------------------------------
    @property
    def bias(self) -> Tensor | None:
        return getattr(self.module, "bias", None)  # (RMSNorm has none)

    def bias_term(self, out: Tensor) -> Tensor:
        return self.bias_shape(self.bias, out)

    #: :math:`1 / \sigma` per group as the forward computed it (:meth:`LayerNormView.forward_saving`), or None
    rstd: Tensor | None = None

    def scale(self, x: Tensor) -> Tensor:
        r""":math:`\gamma / \sigma` for the input ``x`` (the layer's own statistics, biased variance)."""
        if self.rstd is not None:
            return self.weight_term(x) * self.rstd
        centered = x - self.mean(x) if self.center else x
        sigma = torch.sqrt(self.mean(centered * centered) + self.eps(x))
        return self.weight_term(x) / sigma

    def eps(self, x: Tensor) -> float:
        eps = self.module.eps
        return torch.finfo(x.dtype).eps if eps is None else eps

    def vjp(self, grad: Tensor, x: Tensor) -> Tensor:
        r""":math:`J^\top g` with :math:`\sigma` held constant."""
        c = grad * self.scale(x)
        return c - self.mean(c) if self.center else c

    def fan_in(self, x: Tensor) -> int:
        """Inputs connected to each output (the group size; 1 without centring)."""
        return self.group_size(x) if self.center else 1

    def connect_vjp(self, grad: Tensor, x: Tensor) -> Tensor:
        """Send ``grad_k`` to every input of output ``k``'s group."""
        return self.mean(grad) * self.group_size(x) if self.center else grad


class LayerNormView(NormView):
    """``nn.LayerNorm``: normalized over its last ``len(normalized_shape)`` dimensions."""

    def mean(self, t):
        dims = tuple(range(-len(self.module.normalized_shape), 0))
        return t.mean(dims, keepdim=True)

    def group_size(self, x):
        return int(torch.Size(self.module.normalized_shape).numel())

    def forward_saving(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        r"""The output and, for ``nn.LayerNorm``'s own forward in float32/64, the kernel's
        :math:`1/\sigma = 1/\sqrt{\mathrm{Var}(x) + \epsilon}` per group (``(..., 1)``, kept for the backward:
        :meth:`scale` then needs no pass over ``x``); the output is ``F.layer_norm``'s (the same kernel)."""
        m = self.module
        if type(m).forward is not nn.LayerNorm.forward or x.dtype not in (torch.float32, torch.float64) \
                or any(p is not None and p.dtype != x.dtype for p in (m.weight, m.bias)):
            return self.forward(x), None
        out, _, rstd = torch.native_layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)
        return out, rstd

    def bind(self, state: Tensor | None) -> View:
        if state is None:
            return self
        bound = copy.copy(self)
        bound.rstd = state
        return bound


class GroupNormView(NormView):
    """``nn.GroupNorm``: normalized over groups of channels (and all positions); γ, β per channel."""

    def mean(self, t):
        b, groups = t.shape[0], self.module.num_groups
        grouped = t.reshape(b, groups, -1)
        return grouped.mean(-1, keepdim=True).expand_as(grouped).reshape(t.shape)

    def group_size(self, x):
        return x[0].numel() // self.module.num_groups

    def weight_term(self, x):
        weight = self.module.weight
        return 1.0 if weight is None else weight.view(1, -1, *([1] * (x.dim() - 2)))

    def bias_shape(self, bias, out):
        return bias.view(1, -1, *([1] * (out.dim() - 2)))


class ChannelNormView(NormView):
    """A LayerNorm over the channel dimension 1 of ``(B, C, ...)`` (ConvNeXt's ``LayerNorm2d``); γ, β per channel."""

    def mean(self, t):
        return t.mean(1, keepdim=True)

    def group_size(self, x):
        return x.shape[1]

    weight_term = GroupNormView.weight_term
    bias_shape = GroupNormView.bias_shape


class RMSNormView(LayerNormView):
    """``nn.RMSNorm``: scaled by the root mean square over its last dimensions, not centred."""

    center = False


#: normalization class -> its view (registered in :mod:`seqlrp.builtins`)
NORM_VIEWS: dict[type, type[View]] = {nn.LayerNorm: LayerNormView, nn.GroupNorm: GroupNormView}
if hasattr(nn, "RMSNorm"):  # torch >= 2.4
    NORM_VIEWS[nn.RMSNorm] = RMSNormView
NORMS: tuple[type, ...] = tuple(NORM_VIEWS)
