"""Rules for functional ops in a model's forward: the same views and rules as their module twins.

Models write many value-mixing ops functionally: ``x + self.block(x)``, ``x * torch.sigmoid(s)``,
``softmax(a) @ h``, ``out.mean(1)``, ``F.silu(x)``. During a session's forward a
:class:`~torch.overrides.TorchFunctionMode` routes these calls through
:class:`~seqlrp.core.function.LRPFunction` with the rule the composite gives their module twin, so a
residual add, a squeeze-excitation gate or attention pooling needs no rewriting:

=============================================  ==========================  =============================
call (on tensors that carry relevance)          module twin (composite key)  default rule
=============================================  ==========================  =============================
``a + b``, ``a - b``, ``a += b``, ``x + c``     :class:`~.ops.Sum`           ε over the summands (a
                                                                             constant ``c`` is a bias)
``g * s``, ``g`` from sigmoid / hardsigmoid /   :class:`~.ops.Product`       signal-takes-all (the gate
softmax (found on the autograd graph)                                        gets nothing)
``g @ s``, ``bmm``, 2-operand ``einsum``,       :class:`~.ops.Contraction`   ε over the summands of the
``scaled_dot_product_attention`` with a gate                                 signal, none to the gate
``F.linear(x, W)``, ``x @ W``, ``F.conv*d``     ``nn.Linear`` / ``nn.ConvNd`` the layer rule
with constant weights
``torch.mean``/``sum``, ``F.avg_pool*``,        ``nn.AvgPool1d``             ε (fixed non-negative map)
``F.adaptive_avg_pool*``
``-x``, ``x * c``, ``x / c`` (``c`` constant,   none (always)                identity, :math:`R_x = R_y`
also in place: ``x *= c``, ``x.neg_()``)                                     (:class:`~.rules.passthrough.Rescale`)
``F.relu``, ``F.silu``, ``F.gelu``,             the activation module        pass
``torch.sigmoid``, ``torch.tanh``, ...
=============================================  ==========================  =============================

Which factor of a product is the gate is read from the graph: the operand produced by a gating
non-linearity (through reshapes and broadcasts), never guessed from its values. A product of two
signals, a contraction without a gate, and any other mixing op keep their gradient and are named by
the coverage report. In-place forms (``+=``, ``F.relu(x, inplace=True)``) keep their in-place
semantics: the result is copied into the original tensor.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .bilinear import BilinearView, SignalProduct, SoftmaxView
from .function import LayerCall, LRPFunction
from .nodes import GATE_NODES, GATE_THROUGH
from .ops import Contraction, ContractionView, Product, ProductView, Sum, SumView
from .rules.identity import Identity
from .rules.passthrough import Rescale
from .sinks import fold_graph
from .views import ConvView, DenseView, ElementwiseView, PoolView, View


# ------------------------------------------------------------------------------------------ views
class FunctionView(PoolView):
    """A fixed linear map with non-negative weights given as a function (reductions, pooling, scaling)."""

    def __init__(self, fn, label: str, nonnegative_weights: bool):
        super().__init__(None)
        self.fn, self.label, self.nonnegative_weights = fn, label, nonnegative_weights

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.fn(*inputs)

    def output_nonnegative(self, inputs_nonnegative):
        return self.nonnegative_weights and all(inputs_nonnegative)


class ScaleView(View):
    """``y = c x`` for a constant ``c`` (``-x``, ``x * c``, ``x / c``): routed unchanged by :class:`Rescale`."""

    kind = "scale"

    def __init__(self, fn, nonnegative_factor: bool):
        super().__init__(None)
        self.fn, self.nonnegative_factor = fn, nonnegative_factor

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.fn(*inputs)

    def output_nonnegative(self, inputs_nonnegative):
        return self.nonnegative_factor and all(inputs_nonnegative)


class FunctionActivationView(ElementwiseView):
    """An activation called functionally; behaves as its module twin ``probe`` (pass rule, gates)."""

    def __init__(self, probe: nn.Module, fn: Callable[[Tensor], Tensor], gate: str | None):
        super().__init__(probe)
        self.fn, self._gate = fn, gate

    def forward(self, *inputs):
        return self.fn(*inputs)

    @property
    def gate(self):
        return self._gate


class FunctionalDenseView(DenseView):
    """``F.linear(x, W, b)`` (and ``x @ W``) with constant weights: the view of an ``nn.Linear``."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        super().__init__(None)
        self._weight, self._bias = weight, bias

    weight = property(lambda self: self._weight)
    bias = property(lambda self: self._bias)

    def forward(self, x):
        return F.linear(x, self._weight, self._bias)


class _ConvSpec:
    """The hyper-parameters of a functional convolution, shaped like a ``nn.ConvNd`` for :class:`ConvView`."""

    def __init__(self, weight, bias, stride, padding, dilation, groups):
        dims = weight.dim() - 2
        self.weight, self.bias, self.groups, self.padding_mode = weight, bias, groups, "zeros"
        self.kernel_size = tuple(weight.shape[2:])
        def expand(value):
            return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims

        self.stride, self.dilation = expand(stride), expand(dilation)
        self.padding = padding if isinstance(padding, str) else expand(padding)


class FunctionalConvView(ConvView):
    """``F.conv1d/2d/3d`` with constant weights: the view of an ``nn.ConvNd``."""

    def forward(self, x):
        m = self.module
        return self._functional[self.dims](x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


class AttentionView(View):
    r"""``F.scaled_dot_product_attention(q, k, v)``: :math:`A v` with :math:`A = \mathrm{softmax}(q k^\top s +
    M)` the gate (held constant: Ali et al.'s AH rule); relevance goes to ``v`` by ε, none to ``q``, ``k``."""

    kind = "contraction"
    silent = (0, 1)

    def __init__(self, options: dict, weights: Tensor | None = None):
        super().__init__(None)
        self.options, self.weights = options, weights

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, **self.options)

    def forward_saving(self, q, k, v):
        return self.forward(q, k, v), self._attention_weights(q, k)

    def bind(self, state):
        return AttentionView(self.options, state)

    def _attention_weights(self, q: Tensor, k: Tensor) -> Tensor:
        scale = self.options.get("scale") or 1 / math.sqrt(q.shape[-1])
        scores = (q @ k.transpose(-2, -1)) * scale
        mask = self.options.get("attn_mask")
        if self.options.get("is_causal"):
            causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        return scores.softmax(-1)

    def signal_vjp(self, inputs, grad):
        return 2, self.weights.transpose(-2, -1) @ grad

    def support(self, inputs):
        """This attention with its weights replaced by their non-zero pattern (for the ε share)."""
        return AttentionView(self.options, (self.weights != 0).to(inputs[2].dtype)), list(inputs)

    def signal_apply(self, inputs):
        return self.weights @ inputs[2]


# --------------------------------------------------------------------------------------- operands
def _carries_relevance(t: Any) -> bool:
    return isinstance(t, Tensor) and t.requires_grad and t.is_floating_point() and not isinstance(t, nn.Parameter)


def _positive_constant(c: Any) -> bool:
    if isinstance(c, (int, float)):
        return c >= 0
    return False  # a tensor: deciding would need its values (a host sync)




def gate_of(t: Tensor, steps: int = 16) -> str | None:
    """The gating non-linearity that produced ``t`` (through reshapes and broadcasts), from the graph."""
    node = t.grad_fn
    for _ in range(steps):
        if node is None:
            return None
        call = getattr(node, "call", None)
        if isinstance(call, LayerCall):
            return call.view.gate
        name = type(node).__name__
        if name in GATE_NODES:
            return GATE_NODES[name]
        if name not in GATE_THROUGH:
            return None
        node = node.next_functions[0][0]
    return None


def _mask_passes(scores: Tensor) -> None:
    """A constant added to the scores right before a softmax is an attention mask (0 where attended, very negative
    where not): the scores keep all its output relevance (the identity rule) instead of sharing it with the mask
    by ε -- else an all-zero mask would take a share ε/|score| that an absent mask (a sentence alone, sdpa's
    ``is_causal``) does not."""
    call = getattr(scores.grad_fn, "call", None)
    if isinstance(call, LayerCall) and isinstance(call.view, SumView) and call.name == "torch.add (bias)":
        call.rule, call.name = _MASK_RULE, "torch.add (attention mask)"


# -------------------------------------------------------------------------------------- the mode
_REDUCTIONS = {torch.mean: "mean", Tensor.mean: "mean", torch.sum: "sum", Tensor.sum: "sum"}
_POOLS = {F.avg_pool1d: "F.avg_pool1d", F.avg_pool2d: "F.avg_pool2d", F.avg_pool3d: "F.avg_pool3d",
          F.adaptive_avg_pool1d: "F.adaptive_avg_pool1d", F.adaptive_avg_pool2d: "F.adaptive_avg_pool2d",
          F.adaptive_avg_pool3d: "F.adaptive_avg_pool3d"}
_MULS = {torch.mul: "mul", Tensor.mul: "mul", Tensor.__mul__: "mul", Tensor.__rmul__: "mul", torch.multiply: "mul",
         Tensor.multiply: "mul"}
_DIVS = {torch.div: "div", Tensor.div: "div", Tensor.__truediv__: "div", torch.true_divide: "div",
         Tensor.true_divide: "div", torch.divide: "div", Tensor.divide: "div"}
_NEGS = {torch.neg, Tensor.neg, Tensor.__neg__, torch.negative, Tensor.negative}
#: in-place scalings -> their out-of-place twin (computed by the rule on a copy, then copied back)
_IN_PLACE_SCALES = {Tensor.__imul__: Tensor.__mul__, Tensor.mul_: Tensor.__mul__,
                    Tensor.__itruediv__: Tensor.__truediv__, Tensor.div_: Tensor.__truediv__,
                    Tensor.neg_: Tensor.__neg__, torch.neg_: Tensor.__neg__}
#: the rule of every scaling by a constant (not a composite choice: see Rescale)
_RESCALE = Rescale()
_ADDS = {torch.add: 1, Tensor.add: 1, Tensor.__add__: 1, Tensor.__radd__: 1,
         torch.sub: -1, Tensor.sub: -1, Tensor.__sub__: -1}
_RSUBS = {Tensor.__rsub__}
_IN_PLACE_ADDS = {Tensor.__iadd__: 1, Tensor.add_: 1, Tensor.__isub__: -1, Tensor.sub_: -1}
_MATMULS = {torch.matmul: "matmul", Tensor.matmul: "matmul", Tensor.__matmul__: "matmul", torch.bmm: "bmm",
            Tensor.bmm: "bmm"}
#: activation function -> (its module twin, the gate it is)
_ACTIVATIONS: dict[Callable, tuple[type, str | None]] = {
    F.relu: (nn.ReLU, None), torch.relu: (nn.ReLU, None), Tensor.relu: (nn.ReLU, None),
    F.relu6: (nn.ReLU6, None), F.leaky_relu: (nn.LeakyReLU, None), F.elu: (nn.ELU, None), F.selu: (nn.SELU, None),
    F.celu: (nn.CELU, None), F.gelu: (nn.GELU, None), F.silu: (nn.SiLU, None), F.mish: (nn.Mish, None),
    F.hardswish: (nn.Hardswish, None), F.hardtanh: (nn.Hardtanh, None), F.softplus: (nn.Softplus, None),
    F.softsign: (nn.Softsign, None), torch.tanh: (nn.Tanh, None), Tensor.tanh: (nn.Tanh, None),
    F.tanh: (nn.Tanh, None), torch.sigmoid: (nn.Sigmoid, "sigmoid"), Tensor.sigmoid: (nn.Sigmoid, "sigmoid"),
    F.sigmoid: (nn.Sigmoid, "sigmoid"), F.hardsigmoid: (nn.Hardsigmoid, "hardsigmoid"),
}
_MASK_RULE = Identity()
_SOFTMAXES = {F.softmax, torch.softmax, Tensor.softmax}
_IN_PLACE_ACTIVATIONS = {torch.relu_: F.relu, Tensor.relu_: F.relu, F.relu_: F.relu, Tensor.sigmoid_: torch.sigmoid,
                         Tensor.tanh_: torch.tanh, torch.sigmoid_: torch.sigmoid, torch.tanh_: torch.tanh}
_STAND_INS: dict[type, nn.Module] = {}
_SIGNATURES: dict[Callable, inspect.Signature | None] = {}


def _stand_in(cls: type) -> nn.Module:
    """One default instance per module class (activations, Sum, Product): the module a functional op's view
    describes (rules are looked up by class, :meth:`~seqlrp.core.composites.Composite.by_class`)."""
    if cls not in _STAND_INS:
        _STAND_INS[cls] = cls()
    return _STAND_INS[cls]


def _in_place_requested(func: Callable, args: tuple, kwargs: dict) -> bool:
    """Whether an activation call asks for ``inplace=True`` (by keyword or position)."""
    if func not in _SIGNATURES:
        try:
            _SIGNATURES[func] = inspect.signature(func)
        except (TypeError, ValueError):
            _SIGNATURES[func] = None
    signature = _SIGNATURES[func]
    if signature is None or "inplace" not in signature.parameters:
        return False
    return bool(signature.bind(*args, **kwargs).arguments.get("inplace", False))


#: the module twin whose rule each kind of functional op takes
_TWINS = {"pool": nn.AvgPool1d, "sum": Sum, "product": Product, "contraction": Contraction, "linear": nn.Linear,
          "conv": nn.Conv2d, "softmax": nn.Softmax, "signal_product": SignalProduct}


class _LazyRules(dict):
    """kind -> the composite's rule for its module twin (``_TWINS``), looked up on first use (most forwards use
    one or two kinds, or none)."""

    def __init__(self, composite):
        super().__init__()
        self.composite = composite

    def __missing__(self, kind: str):
        rule = self[kind] = self.composite.by_class(_TWINS[kind])
        return rule


class FunctionalRules(TorchFunctionMode):
    """Active during a session's forward: functional ops get the rules of their module twins (see above)."""

    def __init__(self, session):
        super().__init__()
        self.session = session
        composite = session.composite
        self.rules = _LazyRules(composite)
        self.level = session.options.get("record", "sums")
        #: the session's parameter sinks (parameters whose relevance is reported): tensors computed from them
        #: alone stay constants for the rules, as the parameters themselves are
        self._sinks = {id(p) for p in session.sinks.values()}
        self._reach: dict[int, tuple[object, bool]] = {}

    def _carries(self, t: Any) -> bool:
        """Whether ``t`` is a signal (depends on the explained input), not a constant."""
        carries = _carries_relevance(t)
        if not carries or not self._sinks:
            return carries
        return id(t) not in self._sinks if t.grad_fn is None else self._reaches_input(t.grad_fn)

    def _constant(self, c: Any) -> bool:
        return isinstance(c, (int, float)) or (isinstance(c, Tensor) and not self._carries(c))

    def _reaches_input(self, node) -> bool:
        """Whether the graph below ``node`` reaches a leaf other than a parameter sink (memoized per forward)."""
        return fold_graph(node, lambda variable: id(variable) not in self._sinks, any, self._reach)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.is_grad_enabled() and kwargs.get("out") is None:
            result = self._dispatch(func, args, kwargs)
            if result is not NotImplemented:
                return result
        return func(*args, **kwargs)

    # dispatch ------------------------------------------------------------------------------------
    def _dispatch(self, func, args, kwargs):  # noqa: C901 - one branch per family of ops, in order
        if func in _REDUCTIONS or func in _POOLS:
            if args and self._carries(args[0]):
                rest = args[1:]
                label = f"torch.{_REDUCTIONS[func]}" if func in _REDUCTIONS else _POOLS[func]
                return self._pool(lambda x: func(x, *rest, **kwargs), label, args[0], True)
            return NotImplemented
        if func in _MULS or func in _DIVS:
            return self._scale_or_gate(func, args, kwargs)
        if func in _NEGS:
            if len(args) != 1 or kwargs or not self._carries(args[0]):
                return NotImplemented
            return self._call(_RESCALE, ScaleView(func, False), "torch.neg", args[0])
        if func in _IN_PLACE_SCALES:
            if not (args and isinstance(args[0], Tensor)):
                return NotImplemented
            out = self._dispatch(_IN_PLACE_SCALES[func], (args[0].clone(), *args[1:]), kwargs)
            return NotImplemented if out is NotImplemented else args[0].copy_(out)
        if func in _ADDS or func in _RSUBS:
            return self._add(func, args, kwargs)
        if func in _IN_PLACE_ADDS:
            return self._in_place(func, args, kwargs)
        if func in _ACTIVATIONS:
            if not (args and self._carries(args[0])):
                return NotImplemented
            cls, gate = _ACTIVATIONS[func]
            if not _in_place_requested(func, args, kwargs):
                rest = args[1:]
                return self._activation(cls, gate, lambda x: func(x, *rest, **kwargs), args[0], func)
            # F.relu(x, inplace=True): computed out of place by the rule (on a copy), then copied back into x
            arguments = _SIGNATURES[func].bind(*args, **kwargs).arguments
            arguments["inplace"] = False
            options = {k: v for k, v in arguments.items() if k != next(iter(arguments))}
            out = self._activation(cls, gate, lambda x: func(x, **options), args[0].clone(), func)
            return NotImplemented if out is NotImplemented else args[0].copy_(out)
        if func in _IN_PLACE_ACTIVATIONS:
            if not (args and isinstance(args[0], Tensor)):
                return NotImplemented
            out = self._dispatch(_IN_PLACE_ACTIVATIONS[func], (args[0].clone(), *args[1:]), kwargs)
            return NotImplemented if out is NotImplemented else args[0].copy_(out)
        if func in _MATMULS:
            return self._matmul(func, args, kwargs)
        if func is torch.einsum:
            return self._einsum(args, kwargs)
        if func is F.linear:
            return self._linear(*args, **kwargs)
        if func in (F.conv1d, F.conv2d, F.conv3d):
            return self._conv(*args, **kwargs)
        if func is F.scaled_dot_product_attention:
            return self._attention(*args, **kwargs)
        if func in _SOFTMAXES:
            return self._softmax(*args, **kwargs)
        return NotImplemented

    def _scale_or_gate(self, func, args, kwargs):
        if len(args) != 2:
            return NotImplemented
        a, b = args
        is_mul = func in _MULS
        if kwargs:  # (rounding_mode= is not a scaling)
            return NotImplemented
        if self._carries(a) and self._constant(b):
            return self._call(_RESCALE, ScaleView(lambda x: func(x, b), _positive_constant(b)),
                              f"torch.{'mul' if is_mul else 'div'}", a)
        if is_mul and self._carries(b) and self._constant(a):
            return self._call(_RESCALE, ScaleView(lambda x: func(a, x), _positive_constant(a)), "torch.mul", b)
        if is_mul and self._carries(a) and self._carries(b):
            gates = gate_of(a), gate_of(b)
            one_gate = (gates[0] is None) != (gates[1] is None)
            rule = self.rules["product"] if one_gate else self.rules["signal_product"]
            if rule is not None and "bilinear" in rule.kinds:  # (uniform: both factors receive relevance)
                label = f"torch.mul (gate: {gates[0] or gates[1]})" if one_gate else "torch.mul (signals)"
                return self._call(rule, BilinearView(BilinearView.MULTIPLY, label), label, a, b)
            if not one_gate:
                return NotImplemented  # two signals (or two gates) and no rule: the coverage report names it
            gate, signal = (a, b) if gates[0] is not None else (b, a)
            label = f"torch.mul (gate: {gates[0] or gates[1]})"
            return self._call(self.rules["product"], ProductView(_stand_in(Product)), label, gate, signal)
        return NotImplemented

    def _add(self, func, args, kwargs):
        if len(args) != 2 or kwargs.get("alpha", 1) != 1:
            return NotImplemented
        a, b = args
        sign = -1 if func in _RSUBS else _ADDS[func]
        if func in _RSUBS:  # c - x, called as x.__rsub__(c)
            a, b = b, a
        relevant = self._carries(a), self._carries(b)
        if not any(relevant) or not all(r or self._constant(x) for r, x in zip(relevant, (a, b), strict=True)):
            return NotImplemented
        a, b = (x if isinstance(x, Tensor) else torch.tensor(x, dtype=y.dtype, device=y.device)
                for x, y in ((a, b), (b, a)))
        view = SumView(_stand_in(Sum), signs=(1, sign), constants=(not relevant[0], not relevant[1]))
        label = "torch.add" if sign > 0 else "torch.sub"
        if not all(relevant):
            label += " (bias)"
        return self._call(self.rules["sum"], view, label, a, b)

    def _in_place(self, func, args, kwargs):
        """``a += b``: the sum computed as a rule, then copied into ``a`` (its in-place semantics kept)."""
        if len(args) != 2 or not isinstance(args[0], Tensor):
            return NotImplemented
        a, b = args
        add = Tensor.__add__ if _IN_PLACE_ADDS[func] > 0 else Tensor.__sub__
        out = self._add(add, (a.clone(), b), kwargs)
        return NotImplemented if out is NotImplemented else a.copy_(out)

    def _matmul(self, func, args, kwargs):
        if len(args) != 2 or kwargs:
            return NotImplemented
        a, b = args
        if self._carries(a) and self._constant(b) and isinstance(b, Tensor) and b.dim() == 2:
            return self._affine(self.rules["linear"], FunctionalDenseView(b.t(), None), f"torch.{_MATMULS[func]}",
                                a)
        if isinstance(a, Tensor) and isinstance(b, Tensor) and self._carries(a) != self._carries(b) \
                and self._constant(a if self._carries(b) else b):
            # a signal times a constant matrix of any shape (DeBERTa's relative-position keys): a fixed linear map
            label = f"torch.{_MATMULS[func]} (constant)"
            if self._carries(a):
                return self._pool(lambda x: torch.matmul(x, b), label, a, False)
            return self._pool(lambda x: torch.matmul(a, x), label, b, False)
        return self._contract(torch.matmul, a, b, f"torch.{_MATMULS[func]}")

    def _einsum(self, args, kwargs):
        if len(args) != 3 or kwargs or not isinstance(args[0], str):
            return NotImplemented
        equation, a, b = args
        return self._contract(lambda x, y: torch.einsum(equation, x, y), a, b, f"torch.einsum({equation!r})")

    def _contract(self, fn, a, b, label):
        if not (self._carries(a) and self._carries(b)):
            return NotImplemented
        gates = gate_of(a), gate_of(b)
        one_gate = (gates[0] is None) != (gates[1] is None)
        rule = self.rules["contraction"] if one_gate else self.rules["signal_product"]
        if rule is not None and "bilinear" in rule.kinds:  # (uniform: both operands receive relevance)
            label = f"{label} (gate: {gates[0] or gates[1]})" if one_gate else f"{label} (signals)"
            return self._call(rule, BilinearView(fn, label), label, a, b)
        if not one_gate:
            return NotImplemented
        if gates[0] is not None:
            module = Contraction(fn)
            return self._call(self.rules["contraction"], ContractionView(module), f"{label} (gate: {gates[0]})", a, b)
        module = Contraction(lambda gate, signal: fn(signal, gate))  # (the gate always comes first)
        return self._call(self.rules["contraction"], ContractionView(module), f"{label} (gate: {gates[1]})", b, a)

    def _linear(self, x, weight, bias=None):
        if not (self._carries(x) and self._constant(weight) and (bias is None or self._constant(bias))):
            return NotImplemented
        return self._affine(self.rules["linear"], FunctionalDenseView(weight, bias), "F.linear", x)

    def _conv(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        if not (self._carries(x) and self._constant(weight) and (bias is None or self._constant(bias))):
            return NotImplemented
        view = FunctionalConvView(_ConvSpec(weight, bias, stride, padding, dilation, groups))
        return self._affine(self.rules["conv"], view, f"F.conv{weight.dim() - 2}d", x)

    def _attention(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if dropout_p or not self._carries(v):
            return NotImplemented
        if enable_gqa:  # grouped-query attention: each key/value head serves a group of query heads (a routing op)
            k, v = (t.repeat_interleave(q.shape[-3] // t.shape[-3], -3) for t in (k, v))
        rule = self.rules["contraction"]
        if rule is not None and "bilinear" in rule.kinds:
            return self._attention_ops(q, k, v, attn_mask, is_causal, scale)
        options = {"attn_mask": attn_mask, "is_causal": is_causal, "scale": scale}
        return self._call(self.rules["contraction"], AttentionView(options),
                          "F.scaled_dot_product_attention (gate: softmax)", q, k, v)

    def _attention_ops(self, q, k, v, mask, is_causal, scale):
        """``F.scaled_dot_product_attention`` decomposed into the ops an eager attention runs, each with its rule
        (the scores ``q kᵀ`` and ``A v`` products of two signals, the softmax its own rule)."""
        scores = self._apply(torch.matmul, q, k.transpose(-2, -1))
        scores = self._apply(Tensor.__mul__, scores, scale if scale is not None else q.shape[-1] ** -0.5)
        if is_causal:
            causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else \
                self._apply(Tensor.__add__, scores, mask)
        weights = self._apply(F.softmax, scores, -1)
        return self._apply(torch.matmul, weights, v)

    def _apply(self, func, *args):
        """``func(*args)`` with its rule if it has one, else as it is (the mode is off inside a dispatch)."""
        out = self._dispatch(func, args, {})
        return func(*args) if out is NotImplemented else out

    def _softmax(self, x, dim=None, *rest, dtype=None, **options):
        # F.softmax(x, dim, _stacklevel, dtype), torch.softmax(x, dim, dtype), x.softmax(dim, dtype)
        dtype = next((r for r in rest if isinstance(r, torch.dtype)), dtype)
        rule = self.rules["softmax"]
        if rule is None or not self._carries(x) or dim is None:
            return NotImplemented
        _mask_passes(x)
        return self._call(rule, SoftmaxView(dim, dtype), "torch.softmax", x)

    # calls ----------------------------------------------------------------------------------------
    def _pool(self, fn, label: str, x: Tensor, nonnegative_weights: bool):
        return self._call(self.rules["pool"], FunctionView(fn, label, nonnegative_weights), label, x)

    def _affine(self, rule, view, label, x):
        if rule is not None and not rule.applies_to(view):
            return NotImplemented
        return self._call(rule, view, label, x)

    def _activation(self, cls, gate, fn, x, func):
        label = getattr(func, "__name__", cls.__name__)
        return self._call(self.session.composite.by_class(cls), FunctionActivationView(_stand_in(cls), fn, gate),
                          f"torch.{label}", x)

    def _call(self, rule, view: View, label: str, *inputs: Tensor):
        if rule is None:
            return NotImplemented  # the composite has no rule for this kind of op: plain gradient, reported
        call = LayerCall(label, label, rule, view, level=self.level, quiet=True)  # (an op this mode chose: not random)
        self.session.calls.append(call)
        self.session.assigned.setdefault(label, f"{label}: {rule!r}")
        return LRPFunction.apply(call, *inputs)
