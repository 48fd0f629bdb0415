"""Views: what a rule needs to know about a layer, independent of the layer's class.

A rule never touches a module directly. It gets a *view* of the layer:

* :class:`LinearView` -- an affine layer ``z = f(x; W) + b`` (Linear, Conv1d/2d/3d, and the
  tensor-biased layers of the CNN side): the functional form ``f`` with any weight, its transpose
  (vector-Jacobian product) and the bias broadcast to the output.
* :class:`PoolView` -- a linear map with fixed non-negative weights (average pooling).
* :class:`RouteView` -- an op that routes values (max pooling: the winner takes all).
* :class:`ElementwiseView` -- an elementwise activation.

New layer types register a view factory with :func:`register_view` (the built-in ones are registered in
:mod:`seqlrp.builtins`); a module's view is that of the most specific registered class in its MRO.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .registry import ensure_builtins

#: module class -> ``factory(module) -> View`` (filled by :func:`register_view`)
_VIEW_FACTORIES: dict[type, Callable[[nn.Module], View]] = {}


def register_view(*types: type) -> Callable:
    """Decorator: ``factory(module) -> View`` for modules of ``types`` and their subclasses.

    A user layer is one line: ``seqlrp.core.register_view(MyLinear)(seqlrp.core.views.DenseView)``. A
    class registered again gets the new factory; a subclass's own registration wins over its base's.
    """

    def decorate(factory: Callable[[nn.Module], View]) -> Callable[[nn.Module], View]:
        for cls in types:
            _VIEW_FACTORIES[cls] = factory
        return factory

    return decorate


def view_of(module: nn.Module) -> View | None:
    """The view of ``module`` (that of the most specific registered class in its MRO), or ``None`` when no
    rule can apply to its type."""
    ensure_builtins()
    for cls in type(module).__mro__:
        factory = _VIEW_FACTORIES.get(cls)
        if factory is not None:
            return factory(module)
    return None


def deterministic(*types: type) -> None:
    """Declare exact layer classes whose forward draws no random numbers in eval mode (see :data:`DETERMINISTIC`)."""
    DETERMINISTIC.update(types)


def autograd_vjp(fn: Callable[[Tensor], Tensor], shape: torch.Size, like: Tensor, grad: Tensor) -> Tensor:
    """Vector-Jacobian product of a *linear* map ``fn`` at ``grad`` (evaluated at zeros)."""
    with torch.enable_grad():
        x = torch.zeros(shape, dtype=like.dtype, device=like.device, requires_grad=True)
        (g,) = torch.autograd.grad(fn(x), x, grad)
    return g


class View:
    """Base view. ``kind`` tells which rules apply (see :attr:`Rule.kinds`)."""

    kind = "generic"
    #: inputs that receive no relevance by the view's nature (the gate of a gated product): the coverage
    #: report does not follow them
    silent: tuple[int, ...] = ()
    #: the gating non-linearity this view computes ("sigmoid", "hardsigmoid", "softmax"), or None
    gate: str | None = None

    def __init__(self, module: nn.Module):
        self.module = module

    def forward(self, *inputs: Tensor) -> Tensor:
        """The real layer: the module class's own forward (never a modified one)."""
        return type(self.module).forward(self.module, *inputs)

    def forward_saving(self, *inputs: Tensor) -> tuple[Tensor, Tensor | None]:
        """``forward`` plus a tensor the backward needs besides inputs and output (default: none)."""
        return self.forward(*inputs), None

    def bind(self, state: Tensor | None) -> View:
        """This view for one call, given what :meth:`forward_saving` kept (default: itself)."""
        return self

    def output_nonnegative(self, inputs_nonnegative: tuple[bool, ...]) -> bool:
        """Whether the output is >= 0 whenever the inputs flagged True are (structural, no values)."""
        return False

    #: an elementwise map whose output is 0 exactly where its input is <= 0 (ReLU)
    zero_below_zero = False


class LinearView(View, abc.ABC):
    """An affine layer ``z = f(x; W) + b``."""

    kind = "linear"

    @property
    def weight(self) -> Tensor:
        return self.module.weight

    @property
    def bias(self) -> Tensor | None:
        return self.module.bias

    @abc.abstractmethod
    def apply(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """``f(x; weight) + bias`` with the layer's structure (stride, padding, ...)."""

    def vjp(self, grad: Tensor, weight: Tensor, x: Tensor) -> Tensor:
        r"""Transpose of ``x -> f(x; weight)`` applied to ``grad``: :math:`\sum_k w_{jk} g_k`.

        ``x`` is the layer's input: only its shape and memory layout are used.
        """
        return autograd_vjp(lambda u: self.apply(u, weight), x.shape, grad, grad)

    def vjp_pair(self, grad1: Tensor, weight1: Tensor, grad2: Tensor, weight2: Tensor, x: Tensor) -> Tensor:
        """``vjp(grad1, weight1) + vjp(grad2, weight2)`` (subclasses do it in one call)."""
        return self.vjp(grad1, weight1, x) + self.vjp(grad2, weight2, x)

    def vjp_stack(self, grad: Tensor, weights: tuple[Tensor, ...], x: Tensor) -> tuple[Tensor, ...]:
        """``vjp(grad, w, x)`` for each ``w`` (subclasses do it in one call, weights stacked on the input side)."""
        return tuple(self.vjp(grad, w, x) for w in weights)

    def signed_apply(self, x: Tensor, weight_pos: Tensor, weight_neg: Tensor,
                     bias: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(f(x⁺; weight_pos) + f(x⁻; weight_neg) + bias, x⁺, x⁻)``: the two sign halves of the input through
        two weights (:math:`\sum_j (a_j w_{jk})^+` of z⁺ with ``weight_pos = W⁺``, ``weight_neg = W⁻``).

        Subclasses do it in ONE call where the layer allows it: the halves stacked on the input side
        (:meth:`_stacked_halves`), so the sum happens inside the convolution / matmul (no second output map and
        no pass adding them).
        """
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        return self.apply(xp, weight_pos, bias).add_(self.apply(xn, weight_neg)), xp, xn

    @abc.abstractmethod
    def bias_term(self, bias: Tensor, out: Tensor) -> Tensor:
        """``bias`` shaped to broadcast against the output ``out``."""

    #: True when ``apply`` takes a per-output-unit bias (then shifts can ride along in the conv/matmul)
    channel_bias = True

    def fan_in(self, x: Tensor) -> Tensor:
        """Number of (non-padding) inputs connected to each output unit, broadcastable to the output."""
        ones = torch.ones_like(x[:1])
        return self.apply(ones, torch.ones_like(self.weight))

    def connect_vjp(self, grad: Tensor, x: Tensor) -> Tensor:
        """Send ``grad_k`` to every input connected to output ``k`` (the all-ones weight transpose)."""
        return self.vjp(grad, torch.ones_like(self.weight), x)


def _stacked_halves(x: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(cat([x⁺, x⁻], dim), x⁺, x⁻)``, the halves written straight into the stacked tensor (views of it)."""
    size = x.shape[dim]
    shape = list(x.shape)
    shape[dim] = 2 * size
    both = x.new_empty(shape)
    xp, xn = both.narrow(dim, 0, size), both.narrow(dim, size, size)
    torch.clamp(x, min=0, out=xp)
    torch.clamp(x, max=0, out=xn)
    return both, xp, xn


class DenseView(LinearView):
    """View of ``nn.Linear``: ``z = x W^T + b`` on the last dimension."""

    def apply(self, x, weight, bias=None):
        return F.linear(x, weight, bias)

    def vjp(self, grad, weight, x):
        return grad @ weight

    def vjp_pair(self, grad1, weight1, grad2, weight2, x):
        return torch.cat([grad1, grad2], -1) @ torch.cat([weight1, weight2], 0)

    def vjp_stack(self, grad, weights, x):
        return (grad @ torch.cat(weights, 1)).split(x.shape[-1], -1)

    def signed_apply(self, x, weight_pos, weight_neg, bias=None):
        both, xp, xn = _stacked_halves(x, -1)
        return F.linear(both, torch.cat([weight_pos, weight_neg], 1), bias), xp, xn

    def bias_term(self, bias, out):
        return bias

    def fan_in(self, x):
        return torch.full((), x.shape[-1], dtype=x.dtype, device=x.device)

    def connect_vjp(self, grad, x):
        return grad.sum(-1, keepdim=True).expand(x.shape)


def _layout(x: Tensor) -> torch.memory_format:
    """The memory format of ``x`` (channels-last or contiguous), for a stand-in of another shape."""
    if not x.is_contiguous():
        for dims, layout in ((4, torch.channels_last), (5, torch.channels_last_3d)):
            if x.dim() == dims and x.is_contiguous(memory_format=layout):
                return layout
    return torch.contiguous_format


class ConvView(LinearView):
    """View of ``nn.Conv1d/2d/3d`` (any stride, padding, dilation, groups)."""

    _functional = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

    def __init__(self, module: nn.modules.conv._ConvNd):
        super().__init__(module)
        self.dims = len(module.kernel_size)
        # direct transpose via aten.convolution_backward when the padding is numeric and zero-padded
        self._direct = module.padding_mode == "zeros" and not isinstance(module.padding, str)

    def apply(self, x, weight, bias=None):
        m = self.module
        if m.padding_mode != "zeros":
            return self._functional[self.dims](
                F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode),
                weight, bias, m.stride, 0, m.dilation, m.groups,
            )
        return self._functional[self.dims](x, weight, bias, m.stride, m.padding, m.dilation, m.groups)

    def vjp(self, grad, weight, x):
        if not self._direct:
            return super().vjp(grad, weight, x)
        m = self.module
        # the input only gives the shape and layout (an expanded stand-in would be materialized)
        grad_input, _, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, m.stride, m.padding, m.dilation,
            False, [0] * self.dims, m.groups, [True, False, False],
        )
        return grad_input

    def vjp_pair(self, grad1, weight1, grad2, weight2, x):
        """Both transposes in ONE convolution_backward, the output channels of both concatenated (``groups == 1``).

        Grouped convolutions (depthwise) take two: with two output channels per group oneDNN leaves its fast
        depthwise kernel (measured 2-4x slower than two calls: 27.4 vs 7.5 ms on a 96-channel 56² layer).
        """
        if not self._direct or self.module.groups > 1:
            return super().vjp_pair(grad1, weight1, grad2, weight2, x)
        return self.vjp(torch.cat([grad1, grad2], 1), torch.cat([weight1, weight2], 0), x)

    def vjp_stack(self, grad, weights, x):
        """One transpose with the weights stacked on the input-channel side (groups == 1): the input gradient of the
        convolution of a ``len(weights) * C``-channel input (``convolution_backward``; its input, an uninitialized
        stand-in, gives only the shape and layout). Bitwise the ``conv_transpose`` it replaces, and on one CPU thread
        up to 3x faster where that takes the slow path (7.5 -> 2.5 ms: a 1x1 16 -> 96 convolution at 112², batch 1)."""
        m = self.module
        if not self._direct or m.groups != 1:
            return super().vjp_stack(grad, weights, x)
        stacked = torch.cat(weights, 1)
        shape = (x.shape[0], stacked.shape[1], *x.shape[2:])
        stand_in = torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=_layout(x))
        grad_input, _, _ = torch.ops.aten.convolution_backward(
            grad, stand_in, stacked, None, m.stride, m.padding, m.dilation, False, [0] * self.dims, 1,
            [True, False, False],
        )
        return grad_input.split(x.shape[1], 1)

    def signed_apply(self, x, weight_pos, weight_neg, bias=None):
        """One convolution over the stacked halves (``groups == 1``; a grouped one would leave oneDNN's
        depthwise kernel, see :meth:`vjp_pair`)."""
        if self.module.groups != 1 or self.module.padding_mode != "zeros":
            return super().signed_apply(x, weight_pos, weight_neg, bias)
        both, xp, xn = _stacked_halves(x, 1)
        return self.apply(both, torch.cat([weight_pos, weight_neg], 1), bias), xp, xn

    def bias_term(self, bias, out):
        return bias.view(1, -1, *([1] * self.dims))


class PoolView(View):
    """A linear map with fixed non-negative weights: average pooling (plain or adaptive)."""

    kind = "pool"

    def output_nonnegative(self, inputs_nonnegative):
        return all(inputs_nonnegative)

    def vjp(self, grad: Tensor, input_shape: torch.Size) -> Tensor:
        return autograd_vjp(self.forward, input_shape, grad, grad)

    def weight_sum(self, x: Tensor) -> Tensor:
        r""":math:`\sum_j w_{jk}` per output unit (the layer applied to ones)."""
        return self.forward(torch.ones_like(x[:1]))


class RouteView(View):
    """An op whose backward routes each output to one input (max pooling).

    ``nn.MaxPool2d`` keeps the forward's argmax indices, so the backward routes without recomputing
    the pooling; other max pools recompute it under autograd.
    """

    kind = "route"

    def __init__(self, module: nn.Module, indices: Tensor | None = None):
        super().__init__(module)
        self.indices = indices

    def output_nonnegative(self, inputs_nonnegative):
        return all(inputs_nonnegative)

    def _keeps_indices(self) -> bool:
        return type(self.module) is nn.MaxPool2d and not self.module.return_indices

    def _pool_args(self) -> tuple:
        """kernel, stride, padding, dilation, ceil_mode of the ``nn.MaxPool2d``, as the aten ops take them."""
        m = self.module
        return (_pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size),
                _pair(m.padding), _pair(m.dilation), m.ceil_mode)

    def forward_saving(self, *inputs):
        if not self._keeps_indices():
            return super().forward_saving(*inputs)
        return torch.ops.aten.max_pool2d_with_indices(inputs[0], *self._pool_args())

    def bind(self, state):
        return self if state is None else RouteView(self.module, state)

    def vjp(self, x: Tensor, grad: Tensor) -> Tensor:
        if self.indices is not None:
            return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *self._pool_args(), self.indices)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.forward(xg), xg, grad)
        return g


class ElementwiseView(View):
    """An elementwise activation (ReLU, tanh, ...)."""

    kind = "elementwise"

    def output_nonnegative(self, inputs_nonnegative):
        return isinstance(self.module, (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Softplus, nn.Hardsigmoid)) or (
            all(inputs_nonnegative) and isinstance(self.module, (nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.Tanh)))

    def __init__(self, module: nn.Module):
        super().__init__(module)
        # never write into a tensor saved for the backward: run an out-of-place twin of the module
        self._run = module
        if getattr(module, "inplace", False):
            self._run = copy.copy(module)
            self._run.inplace = False

    def forward(self, *inputs: Tensor) -> Tensor:
        return type(self._run).forward(self._run, *inputs)

    @property
    def zero_below_zero(self) -> bool:
        m = self.module
        # ReLU6 and Hardtanh(0, max) are 0 exactly where their input is <= 0, like ReLU (bounds read as they are now)
        return type(m) is nn.ReLU or (type(m) in (nn.ReLU6, nn.Hardtanh) and m.min_val == 0 and m.max_val > 0)

    @property
    def gate(self) -> str | None:
        return {nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid"}.get(type(self.module))


ACTIVATIONS: tuple[type, ...] = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
    nn.Softplus, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.PReLU, nn.Softsign, nn.Tanhshrink,
)
AVG_POOLS: tuple[type, ...] = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)
MAX_POOLS: tuple[type, ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
CONVOLUTIONS: tuple[type, ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
DENSE: tuple[type, ...] = (nn.Linear,)
#: modules that only route or copy values, or are the identity in eval mode: no rule needed
ROUTING: tuple[type, ...] = (
    nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Embedding,
)

#: exact layer classes whose forward draws no random numbers in eval mode: an explanation runs them without the
#: stochastic watch (:mod:`seqlrp.core.stochastic`: one Python dispatch per ATen op less). A subclass may
#: override ``forward`` and is watched. Filled by :func:`deterministic` (the built-in classes: :mod:`seqlrp.builtins`).
DETERMINISTIC: set[type] = set()

#: the dense and convolutional layer types (a tuple: fixed here; the CNN side's tensor-biased layers are subclasses
#: of nn.Linear / nn.Conv2d, so they belong to it by isinstance)
WEIGHTED: tuple[type, ...] = DENSE + CONVOLUTIONS
