"""The result of an explanation."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from .checks import check_index
from .coverage import Coverage
from .function import LayerCall
from .reprs import summary


@dataclass
class LayerConservation:
    """Relevance entering and leaving one wrapped layer call, per sample."""

    name: str
    rule: str
    relevance_out: Tensor
    relevance_in: Tensor
    #: per-sample sum of |R_out| (the scale of the rounding error); None where not recorded
    magnitude: Tensor | None = None

    @property
    def delta(self) -> Tensor:
        """``relevance_in - relevance_out`` per sample (0 for a conserving rule)."""
        return self.relevance_in - self.relevance_out


@dataclass(repr=False)
class Explanation:
    """Relevance of the inputs for the target outputs.

    Attributes
    ----------
    relevance : Tensor
        Same shape as the inputs.
    output : Tensor
        The model's output (logits), ``(B, C)``.
    target : Tensor
        The explained class per sample, ``(B,)``.
    coverage : Coverage
        Which rule went where, and which ops had none.
    seed : Tensor
        The relevance put on the output (e.g. the target logit), ``(B, C)``.
    labels : list of str or None
        Class names (one per class), when given: the reports and the notebook view show them.
    parameter_relevance : dict[str, Tensor]
        Relevance that reached parameters the forward uses directly (a class token concatenated to the
        patches, a learned embedding added as a signal): qualified parameter name -> ``(B,)``. Empty when none
        did. ``relevance_sum + sum(parameter_relevance.values())`` is what the input side received.
    """

    relevance: Tensor
    output: Tensor
    target: Tensor
    coverage: Coverage
    seed: Tensor | None = None
    calls: list[LayerCall] = field(default_factory=list, repr=False)
    labels: list[str] | None = None
    parameter_relevance: dict[str, Tensor] = field(default_factory=dict)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # (set before @dataclass runs on the subclass, which then keeps it: TextExplanation's repr is short too)
        cls.__repr__ = Explanation.__repr__

    def __repr__(self) -> str:
        """Short: shapes, dtypes and ranges of the tensors, the targets, the coverage in one phrase."""
        parts = [f"{len(self.output)} examples"]
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name in ("calls", "coverage", "target"):
                continue
            if isinstance(value, list) and f.name != "labels":
                value = f"<{len(value)} lists>"
                parts.append(f"{f.name}={value}")
                continue
            parts.append(f"{f.name}={summary(value)}")
        targets = self.target.tolist()
        parts.append("target=" + (repr(targets) if len(targets) <= 8 else f"[{', '.join(map(str, targets[:8]))}, ...]"))
        unruled = sum(self.coverage.unruled.values())
        parts.append(f"coverage=<{len(self.coverage.rules)} rules, "
                     + ("complete>" if not unruled else f"{unruled} ops without a rule>"))
        return f"{type(self).__name__}(" + ", ".join(parts) + ")"

    def __getitem__(self, index: int) -> Explanation:
        """Example ``index`` (negative: from the end) as an explanation of a batch of one, of the same class.

        Every per-sample field is cut to that example (tokens, lengths, the conservation rows too); an index past
        the batch is an ``IndexError`` naming the batch size.
        """
        batch = self.output.shape[0]
        i = check_index(index, batch)

        def one(name: str, value):
            if isinstance(value, Tensor) and value.dim():
                if name == "direction_relevance":  # (D, B, T, E)
                    return value[:, i:i + 1]
                return value[i:i + 1] if value.shape[0] == batch else value
            if name == "tokens" and value is not None:
                return [value[i]]
            return value

        calls = [replace(call, **{name: one(name, getattr(call, name))
                                  for name in ("relevance_out", "relevance_in", "magnitude")}) for call in self.calls]
        return replace(self, **{f.name: one(f.name, getattr(self, f.name)) for f in fields(self) if f.init
                                and f.name != "calls"}, calls=calls)

    @property
    def relevance_sum(self) -> Tensor:
        """Total input relevance per sample."""
        return self.relevance.reshape(self.relevance.shape[0], -1).sum(1)

    @property
    def parameter_relevance_sum(self) -> Tensor:
        """Total relevance that reached parameters, per sample (zeros when none did)."""
        total = self.relevance.new_zeros(self.relevance.shape[0])
        for values in self.parameter_relevance.values():
            total = total + values.to(total.dtype)
        return total

    def conservation(self) -> list[LayerConservation]:
        """Per wrapped layer call (in backward order): sum of relevance in vs out, per sample."""
        rows = []
        for call in reversed(self.calls):
            if call.relevance_out is None:  # the layer was not on the path to the output
                continue
            rows.append(LayerConservation(call.name, repr(call.rule), call.relevance_out, call.relevance_in,
                                           call.magnitude))
        return rows

    def conservation_table(self) -> str:
        """The conservation rows as text (sums over the batch)."""
        lines = [f"{'layer':40s} {'rule':40s} {'R_out':>14s} {'R_in':>14s}"]
        for row in self.conservation():
            lines.append(f"{row.name[:40]:40s} {row.rule[:40]:40s} "
                         f"{float(row.relevance_out.sum()):14.6g} {float(row.relevance_in.sum()):14.6g}")
        total = float(self.seed.sum()) if self.seed is not None else float("nan")
        lines.append(f"{'seed (output)':81s} {total:14.6g}")
        lines.append(f"{'input':81s} {float(self.relevance.sum()):14.6g}")
        for name, values in self.parameter_relevance.items():
            lines.append(f"{('parameter ' + name)[:81]:81s} {float(values.sum()):14.6g}")
        if self.parameter_relevance:
            total = float(self.relevance.sum() + self.parameter_relevance_sum.sum())
            lines.append(f"{'input + parameters':81s} {total:14.6g}")
        return "\n".join(lines)

    def to(self, device: torch.device | str) -> Explanation:
        return Explanation(self.relevance.to(device), self.output.to(device), self.target.to(device),
                           self.coverage, None if self.seed is None else self.seed.to(device), self.calls,
                           self.labels, {k: v.to(device) for k, v in self.parameter_relevance.items()})

    def _repr_html_(self) -> str:
        """The notebook view (Jupyter): heatmaps or tokens with their colour scales, self-contained HTML."""
        from ..viz.notebook import explanation_html

        return str(explanation_html(self))  # (a plain str: a Markup would escape HTML it is concatenated with)
