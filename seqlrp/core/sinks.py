"""Relevance that reaches parameters, per sample: a class token, a learned position embedding.

A parameter the forward uses directly (``torch.cat([class_token.expand(B, -1, -1), x], 1)``) is a leaf of
the graph (:attr:`Session.sinks <seqlrp.core.session.Session.sinks>`); the one backward gives its relevance
summed over the batch. Per sample: the relevance crosses from the input's part of the graph into the
parameter's at a *mixing edge* (the ``cat``'s edge to the expanded token); a hook there reads the incoming
relevance while it still has the batch dimension. Below the edge only the parameter's own ops run (expand,
slice, view: routing), so the per-sample values sum to the parameter's total.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from torch import Tensor


def fold_graph(root, leaf: Callable[[Tensor], Any], combine: Callable[[list], Any], memo: dict) -> Any:
    """A value for every autograd node below ``root``, bottom-up: ``leaf(variable)`` at the leaves
    (AccumulateGrad nodes), ``combine(children's values)`` elsewhere. ``memo`` (id -> (node, value); the node
    is kept so its id is not reused) carries over between calls; iterative (deep graphs)."""
    stack = [root]
    while stack:
        node = stack[-1]
        if id(node) in memo:
            stack.pop()
            continue
        variable = getattr(node, "variable", None)
        if variable is not None:
            memo[id(node)] = (node, leaf(variable))
            stack.pop()
            continue
        children = [child for child, _ in node.next_functions if child is not None]
        pending = [child for child in children if id(child) not in memo]
        if pending:
            stack.extend(pending)
            continue
        memo[id(node)] = (node, combine([memo[id(child)][1] for child in children]))
        stack.pop()
    return memo[id(root)][1]


def _only(parts: list) -> frozenset[str] | None:
    """The sinks a node alone reaches: the union of its children's, None if any child reaches another leaf."""
    return frozenset().union(*parts) if parts and all(p is not None for p in parts) else None


class ParameterTaps:
    """Hooks on the mixing edges of the parameter sinks below ``output``; :meth:`per_sample` reads them."""

    def __init__(self, output: Tensor, sinks: dict[str, Tensor], batch: int):
        self.batch, self.names = batch, list(sinks)
        ids = {id(p): name for name, p in sinks.items()}
        memo: dict[int, tuple] = {}  # node -> (node, the sinks it alone reaches; None: it reaches other leaves)
        self.tapped: dict[str, list[Tensor]] = {name: [] for name in sinks}
        self.unsplit: set[str] = set()
        root = output.grad_fn
        if root is None:
            return
        fold_graph(root, lambda variable: frozenset({ids[id(variable)]}) if id(variable) in ids else None, _only, memo)
        below = {key: value for key, (_, value) in memo.items()}
        seen: set[int] = set()
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in seen or below.get(id(node)) is not None:
                continue
            seen.add(id(node))
            edges = {i: below[id(child)] for i, (child, _) in enumerate(node.next_functions)
                     if child is not None and below.get(id(child))}
            if edges:
                node.register_hook(self._hook(edges))
            stack.extend(child for child, _ in node.next_functions if child is not None)

    def _hook(self, edges: dict[int, frozenset[str]]):
        def hook(grad_inputs, grad_outputs):
            for index, names in edges.items():
                grad = grad_inputs[index]
                if grad is None:
                    continue
                if len(names) == 1 and grad.dim() > 0 and grad.shape[0] == self.batch:
                    self.tapped[next(iter(names))].append(grad.detach().reshape(self.batch, -1).sum(1))
                else:
                    self.unsplit.update(names)

        return hook

    def per_sample(self, totals: list[Tensor | None]) -> dict[str, Tensor]:
        """name -> ``(B,)`` relevance, for every sink the backward reached (``totals``: its summed gradient)."""
        result = {}
        for name, total in zip(self.names, totals, strict=True):
            if total is None:
                continue
            whole = total.detach().sum()
            parts = self.tapped[name]
            if parts and name not in self.unsplit:
                values = sum(parts[1:], parts[0])
                tapped = values.sum()
                if not bool(tapped == whole) and bool(tapped != 0):  # (a non-routing op below the edge)
                    values = values * (whole / tapped)
                result[name] = values
            else:
                if self.batch > 1:
                    warnings.warn(f"the relevance reaching parameter {name!r} could not be split per sample (it "
                                  "enters the computation without a batch dimension); each sample gets an equal "
                                  "share of the batch total", UserWarning, stacklevel=4)
                result[name] = whole.expand(self.batch) / self.batch
        return result
