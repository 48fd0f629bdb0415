"""Layers that canonized CNNs are built from, with their views (so rules apply).

* :class:`~seqlrp.core.ops.Sum` -- explicit residual sums (re-exported here).
* :class:`ThreshReLU` -- ``ReLU(BN(x)) = BN(ThreshReLU(x))`` (the DenseNet theorem).
* :class:`TensorBiasedConv2d` -- a convolution whose bias is a spatial map (a BN fused into the
  *next* conv, with padding).
* :class:`TensorBiasedLinear` -- a linear layer whose bias is any tensor broadcast to its output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.ops import Sum
from ..core.rules.base import Rule
from ..core.views import ConvView, DenseView, ElementwiseView, LinearView


class ThreshReLU(nn.Module):
    r"""Threshold ReLU: :math:`u = x` where :math:`(x - t)\,\mathrm{sign}(\gamma) > 0`, else :math:`u = t`.

    Theorem (DESIGN.md): for a batch norm :math:`\mathrm{BN}(x) = \gamma (x - \mu)/s + \beta` with
    :math:`\gamma \ne 0` and :math:`t = \mu - \beta s / \gamma`,
    :math:`\mathrm{ReLU}(\mathrm{BN}(x)) = \mathrm{BN}(\mathrm{ThreshReLU}(x))`: where the BN output
    is positive both sides agree, elsewhere :math:`\mathrm{BN}(t) = 0`. The BN can then be fused
    into the next linear layer. It is a per-channel clamp: :math:`\max(x, t)` for :math:`\gamma > 0`,
    :math:`\min(x, t)` for :math:`\gamma < 0` (one op, no comparisons). Channels with
    :math:`\gamma = 0` have a constant BN output; they output the constant ``t`` (the fused next layer
    gives them weight 0).

    Parameters
    ----------
    threshold : Tensor
        ``(C,)`` per-channel thresholds ``t``.
    sign : Tensor
        ``(C,)`` ``sign(γ)`` in {-1, 0, +1}.
    """

    def __init__(self, threshold: Tensor, sign: Tensor):
        super().__init__()
        inf = torch.full_like(threshold, float("inf"))
        self.register_buffer("threshold", threshold.detach().clone())
        self.register_buffer("sign", sign.detach().clone())
        # clamp bounds: [t, inf) for γ > 0, (-inf, t] for γ < 0, [t, t] for γ = 0
        self.register_buffer("low", torch.where(sign < 0, -inf, threshold).detach().clone())
        self.register_buffer("high", torch.where(sign > 0, inf, threshold).detach().clone())

    def _shape(self, x: Tensor) -> tuple[int, ...]:
        return (1, -1) + (1,) * (x.dim() - 2)

    def forward(self, x: Tensor) -> Tensor:
        shape = self._shape(x)
        return torch.clamp(x, self.low.view(shape).to(x.dtype), self.high.view(shape).to(x.dtype))

    def pass_active(self, relevance: Tensor, x: Tensor) -> Tensor:
        r"""``relevance`` where the unit is active, :math:`(x - t)\,\mathrm{sign}(\gamma) > 0`, else 0.

        One fused op (the ReLU's own backward kernel) on :math:`\mathrm{sign}(\gamma)(x - t)`: no
        comparison pass. (At :math:`x = t` exactly the BN output is 0: inactive, like a ReLU at 0.)
        """
        shape = self._shape(x)
        sign = self.sign.view(shape).to(x.dtype)
        distance = torch.addcmul(-self.threshold.view(shape).to(x.dtype) * sign, x, sign)
        return torch.ops.aten.threshold_backward(relevance, distance, 0)

    def extra_repr(self) -> str:
        return f"channels={self.threshold.numel()}"


class ThreshReLUView(ElementwiseView):
    """View of :class:`ThreshReLU`: elementwise, with the active set."""

    def pass_active(self, relevance: Tensor, x: Tensor) -> Tensor:
        return self.module.pass_active(relevance, x)

    def output_nonnegative(self, inputs_nonnegative):
        return False


class ActivePass(Rule):
    r"""Pass relevance where an activation follows its input, drop it where it outputs a constant.

    .. math:: R_{\text{in}} = R_{\text{out}} \odot [\text{unit active}]

    For :class:`ThreshReLU`: an inactive unit outputs the constant ``t``, whose contribution to the
    next (BN-fused) layer is exactly cancelled by that layer's bias map; its relevance is that of a
    bias and is absorbed, as the original ReLU (output 0) would have had no relevance there. For a
    plain ReLU this equals ``pass`` up to relevance on zero outputs.
    """

    name = "active_pass"

    kinds = frozenset({"elementwise"})
    passes_on_active = True

    def params(self):
        return {}

    def relevance(self, view, inputs, out, relevance, nonnegative=()):
        (x,) = inputs
        if isinstance(view, ThreshReLUView):
            return (view.pass_active(relevance, x),)
        return (relevance * (out != 0).to(relevance.dtype),)


class TensorBiasedConv2d(nn.Conv2d):
    r"""``conv(x; W) + B`` with a bias *map* ``B (C_out, H_out, W_out)``.

    Built from a per-input-channel constant ``c`` (the shift of a batch norm before the conv) and the
    original conv: :math:`\mathrm{conv}_W(a \odot u + c) + b = \mathrm{conv}_{W a}(u) + B`,
    :math:`B = \mathrm{conv}_W(\mathrm{broadcast}(c)) + b`, where the zero padding makes ``B`` differ at
    the borders. ``B`` is computed once per input size, dtype and device, and cached.
    """

    def __init__(self, conv: nn.Conv2d, scale: Tensor, shift: Tensor):
        # built on the meta device (no random initialization: the user's random stream is not touched)
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, bias=False, padding_mode=conv.padding_mode, device="meta")
        with torch.no_grad():
            self.weight = nn.Parameter(conv.weight * _group_scale(scale, conv), conv.weight.requires_grad)
        self.register_buffer("source_weight", conv.weight.detach().clone())
        self.register_buffer("source_bias", None if conv.bias is None else conv.bias.detach().clone())
        self.register_buffer("shift", shift.detach().clone())
        self._maps: dict = {}

    def bias_map(self, x: Tensor) -> Tensor:
        """The bias map for inputs shaped like ``x`` (cached per size, dtype, device and tensor versions)."""
        key = (tuple(x.shape[2:]), x.dtype, x.device)
        # the tensors it is computed from, by identity, storage and version: an edit recomputes it
        sources = tuple(None if t is None else (id(t), t.data_ptr(), t._version)
                        for t in (self.source_weight, self.source_bias, self.shift))
        cached = self._maps.get(key)
        if cached is None or cached[0] != sources:
            constant = self.shift.to(x.dtype).view(1, -1, 1, 1).expand(1, -1, *x.shape[2:])
            bias_map = self._conv_forward(constant, self.source_weight.to(x.dtype),
                                          None if self.source_bias is None else self.source_bias.to(x.dtype))[0]
            cached = self._maps[key] = (sources, bias_map)
        return cached[1]

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight, None) + self.bias_map(x)


def _group_scale(scale: Tensor, conv: nn.Conv2d) -> Tensor:
    # weight (C_out, C_in/groups, k, k): input channel of weight[o, j] is (o // (C_out/groups)) * C_in/groups + j
    per_group = conv.in_channels // conv.groups
    out_per_group = conv.out_channels // conv.groups
    group = torch.arange(conv.out_channels, device=scale.device) // out_per_group
    index = group[:, None] * per_group + torch.arange(per_group, device=scale.device)[None, :]
    return scale[index].view(conv.out_channels, per_group, 1, 1)


class TensorBiasedConvView(ConvView):
    """View of :class:`TensorBiasedConv2d`: the bias is the map of the input size of the call (kept per call)."""

    channel_bias = False

    def __init__(self, module, bias: Tensor | None = None):
        super().__init__(module)
        self._bias = bias

    @property
    def bias(self):
        return self._bias

    def forward_saving(self, *inputs):
        bias = self.module.bias_map(inputs[0])
        return self.module._conv_forward(inputs[0], self.module.weight, None) + bias, bias

    def forward(self, *inputs):
        return self.forward_saving(*inputs)[0]

    def bind(self, state):
        return TensorBiasedConvView(self.module, state)

    def bias_term(self, bias, out):
        return bias.unsqueeze(0)


class ChannelAffine(nn.Module):
    r"""A batch norm kept as an explicit per-channel affine layer: :math:`y = x \odot w + b` over dimension 1.

    Canonization fuses a batch norm into the layer before it or, through :class:`ThreshReLU`, into the
    layers after it; one that fits neither pattern (after a sum, a pooling, at the input) becomes this
    layer: a linear map with a diagonal weight, so every linear rule applies to it (the CNN presets give
    it ε, which sends each unit's relevance to its input in the share :math:`x w / (x w + b)`).
    """

    def __init__(self, scale: Tensor, shift: Tensor):
        super().__init__()
        self.weight = nn.Parameter(scale.detach().clone())
        self.bias = nn.Parameter(shift.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


class ChannelAffineView(LinearView):
    """View of :class:`ChannelAffine`: a diagonal linear map (one input per output unit)."""

    @staticmethod
    def _shape(x: Tensor) -> tuple[int, ...]:
        return (1, -1) + (1,) * (x.dim() - 2)

    def apply(self, x, weight, bias=None):
        out = x * weight.view(self._shape(x))
        return out if bias is None else out + bias.view(self._shape(x))

    def vjp(self, grad, weight, x):
        return grad * weight.view(self._shape(x))

    def bias_term(self, bias, out):
        return bias.view(self._shape(out))

    def fan_in(self, x):
        return torch.ones((), dtype=x.dtype, device=x.device)

    def connect_vjp(self, grad, x):
        return grad


class TensorBiasedLinear(nn.Linear):
    """``x W^T + B`` where the bias ``B`` is any tensor broadcastable to the output."""

    def __init__(self, weight: Tensor, bias: Tensor):
        super().__init__(weight.shape[1], weight.shape[0], bias=False, device="meta")  # (no random init)
        self.weight = nn.Parameter(weight.detach().clone())
        self.register_buffer("bias_tensor", bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight) + self.bias_tensor


class TensorBiasedLinearView(DenseView):
    channel_bias = False

    @property
    def bias(self):
        return self.module.bias_tensor

    def bias_term(self, bias, out):
        return bias



__all__ = ["ActivePass", "Sum", "TensorBiasedConv2d", "TensorBiasedLinear", "ThreshReLU"]
