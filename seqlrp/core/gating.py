"""Gating: find the layers whose output relevance is structurally zero wherever the output is negative.

A layer whose only consumer is a ReLU with the pass rule receives the ReLU's output relevance. If
everything that consumes the ReLU's output uses a rule whose input relevance vanishes where its input
is 0 (:math:`R_j = a_j c_j`: ε, LRP-0, z⁺, αβ, γ, ε on sums and average pools; max pooling,
signal-takes-all products and reshapes pass this on), then the relevance of every unit with
:math:`z_k \\le 0` is exactly 0. Rules can use that: the sign-aware γ rule then needs one transpose
instead of two (see :class:`~seqlrp.core.rules.gamma.Gamma`). The proof is on the graph, before the
backward runs; no values are read (no host synchronisation).
"""

from __future__ import annotations

from collections import defaultdict

from torch import Tensor

from .function import LayerCall
from .nodes import RESHAPING


def _call(node) -> LayerCall | None:
    call = getattr(node, "call", None)
    return call if isinstance(call, LayerCall) else None


def _consumers(root) -> tuple[dict[int, object], dict[int, list]]:
    """For every node the backward from ``root`` reaches: id -> node, and id -> the nodes that take its output."""
    nodes, consumers = {id(root): root}, defaultdict(list)
    stack = [root]
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            consumers[id(child)].append(node)
            if id(child) not in nodes:
                nodes[id(child)] = child
                stack.append(child)
    return nodes, consumers


def mark_gated(output: Tensor) -> int:
    """Set ``call.gated`` on every layer call whose rule can use it and whose output relevance is provably
    zero wherever its output is ``<= 0``. Returns how many were marked."""
    root = output.grad_fn
    if root is None:
        return 0
    nodes, consumers = _consumers(root)
    flow = _ZeroFlow(consumers, {id(root): False})  # the seed may be non-zero on a zero output
    marked = 0
    for node_id, users in consumers.items():
        if len(users) != 1:
            continue
        relu = _call(users[0])
        if relu is None or not relu.rule.passes_on_active or not relu.view.zero_below_zero:
            continue
        call = _call(nodes[node_id])
        if call is not None and call.rule.uses_gating and flow.vanishes_at_zero(users[0]):
            call.gated = True
            marked += 1
    return marked


class _ZeroFlow:
    """Whether the relevance arriving at a node's output is 0 wherever that output is 0 (memoized).

    (Methods, not two nested functions calling each other: those would form a reference cycle holding the
    whole autograd graph until Python's cyclic collector ran.)
    """

    def __init__(self, consumers: dict[int, list], known: dict[int, bool]):
        self.consumers, self.known = consumers, known

    def vanishes_at_zero(self, node) -> bool:
        key = id(node)
        if key not in self.known:
            self.known[key] = False  # (cycle guard; graphs are acyclic)
            users = self.consumers.get(key, [])
            self.known[key] = bool(users) and all(self.keeps_zero(user) for user in users)
        return self.known[key]

    def keeps_zero(self, user) -> bool:
        call = _call(user)
        if call is None:
            return type(user).__name__ in RESHAPING and self.vanishes_at_zero(user)
        if call.rule.zero_for_zero_input:
            return True
        if call.view.kind == "route":  # max pooling: a zero max gets 0
            return self.vanishes_at_zero(user)
        # signal-takes-all: the signal gets the product's relevance, 0 where the product is 0 (a zero signal makes
        # it 0) if that vanishes at zero; the gate gets none (squeeze-excitation after a ReLU)
        return call.view.kind == "product" and call.rule.name == "signal_takes_all" and self.vanishes_at_zero(user)
