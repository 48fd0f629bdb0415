"""Every torchvision classification model: canonized (forward equivalence, float64), explained (coverage),
conservation -- or the one-line reason it is not.

For each name in ``torchvision.models.list_models(module=torchvision.models)``: weights=None with random
batch-norm statistics (both signs of γ) and non-zero heads, float64, batch 1 at 64x64 (224x224 for the
transformers, 80x80 for Inception v3):

* ``equivalence``: max |logit difference| of the canonized model vs the model (must be <= 1e-9 · max|logit|);
* ``coverage``: the ops without a rule in an EpsilonPlusFlat explanation (must be none);
* ``layer conservation``: with ε everywhere and bias_factor = 1 every layer conserves; the worst layer's
  max |R_in - R_out| / sum |R_out| (must be <= 1e-6);
* ``R/logit``: input relevance / target logit for EpsilonPlusFlat (< 1: biases absorb relevance) and for
  ε = 1e-9, bias_factor = 1 everywhere. The latter is 1 only where relevance stays of the logit's size: with
  random weights, ε = 1e-9 and near-zero pre-activations, relevances of opposite signs grow to ~1e17 in deep
  nets (each layer still conserving) and the float64 sum of the input relevance loses the logit (kept in
  the JSON, left out of the markdown table);
* ``seconds`` for canonize + both explanations.

    python benchmarks/models.py [--names resnet18,vit_b_16] [--json out.json] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torchvision
from torch import nn

import seqlrp
from seqlrp.cnn import EpsilonPlusFlat, ThreshReLU

TRANSFORMERS = ("vit", "swin", "maxvit")


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model (float64, eval, random non-trivial statistics) and an input of a size it accepts."""
    kwargs = {"init_weights": True, "aux_logits": False} if name in ("googlenet", "inception_v3") else {}
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                sign = torch.where(torch.rand(n, generator=generator) < 0.2, -1.0, 1.0)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(sign * (torch.rand(n, generator=generator) * 0.4 + 0.2))
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
            if isinstance(module, nn.Linear) and not bool(module.weight.any()):  # (ViT's zero-initialized head)
                module.weight.normal_(0, 0.02, generator=generator)
    size = 224 if name.startswith(TRANSFORMERS) else (80 if name == "inception_v3" else 64)
    x = torch.randn(1, 3, size, size, dtype=torch.float64, generator=generator)
    return model.double().eval(), x


class Conserving(seqlrp.Composite):
    """ε with bias_factor = 1 everywhere (the bias shares redistributed), pass on activations and ThreshReLU:
    every layer conserves; canonized as the CNN presets do."""

    def __init__(self):
        eps = ("epsilon", {"epsilon": 1e-9, "bias_factor": 1.0})
        rules = {key: eps for key in (seqlrp.groups.WEIGHTED, seqlrp.groups.AVG_POOLS, seqlrp.groups.NORMS,
                                      seqlrp.core.Sum, seqlrp.core.Contraction, seqlrp.cnn.ChannelAffine)}
        rules.update({seqlrp.core.Product: "signal_takes_all", seqlrp.groups.MAX_POOLS: "winner_takes_all",
                      ThreshReLU: "pass", seqlrp.groups.ACTIVATIONS: "pass"})
        super().__init__(rules)

    def canonize(self, model: nn.Module) -> nn.Module:
        return seqlrp.cnn.canonize(model, verify=False)


def check(name: str, build=build) -> dict:
    """One row of the table (``status``: "explained" or the reason it is not); ``build(name)`` gives the model and
    its input."""
    start = time.perf_counter()
    row = {"model": name}
    try:
        model, x = build(name)
        canonical = seqlrp.cnn.canonize(model, verify=False)
        with torch.no_grad():
            reference, ours = model(x), canonical(x)
        row["equivalence"] = float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-30))
        del canonical  # (the largest models hold several GB of float64 weights: one canonical copy at a time)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", seqlrp.CoverageWarning)
            result = seqlrp.explain(model, x, composite=EpsilonPlusFlat())
            conserved = seqlrp.explain(model, x, target=result.target, composite=Conserving(), record="full")
        logit = result.output.gather(1, result.target[:, None])[:, 0]
        row["unruled"] = dict(result.coverage.unruled)
        row["R/logit EPF"] = float(result.relevance_sum[0] / logit[0])
        row["R/logit conserving"] = float(conserved.relevance_sum[0] / logit[0])
        row["layer conservation"] = max(float((layer.delta.abs() / layer.magnitude.clamp_min(1e-300)).max())
                                        for layer in conserved.conservation())
        row["status"] = "explained" if not row["unruled"] and row["equivalence"] <= 1e-9 \
            and row["layer conservation"] <= 1e-6 else "incomplete"
    except Exception as error:  # noqa: BLE001 - the table reports every failure as its one-line reason
        row["status"] = f"refused: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    row["seconds"] = time.perf_counter() - start
    return row


def check_isolated(name: str, threads: int, survey: str = "models") -> dict:
    """:func:`check` in a fresh process: memory is returned after each model, and a process killed for memory
    (the largest models hold several GB of float64 weights) is reported as a row instead of ending the survey.
    ``survey``: the module of benchmarks/ whose ``check`` runs (``"timm_models"`` for the timm survey)."""
    code = (f"import json, torch, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import {survey}; "
            f"torch.set_num_threads({threads}); print(json.dumps({survey}.check({name!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        reason = "killed (out of memory)" if done.returncode in (-9, 137) else done.stderr.strip().splitlines()[-1]
        return {"model": name, "status": f"not run: {reason}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    lines = ["| model | status | canonized: max rel. logit diff | worst layer: \\|ΔR\\| / Σ\\|R_out\\| (ε, bf=1) "
             "| R/logit EpsilonPlusFlat | s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "equivalence" in r and "R/logit EPF" in r:
            lines.append(f"| {r['model']} | {r['status']} | {r['equivalence']:.1e} | {r['layer conservation']:.1e} | "
                         f"{r['R/logit EPF']:.3g} | {r['seconds']:.0f} |")
        else:
            seconds = f"{r['seconds']:.0f}" if "seconds" in r else ""
            lines.append(f"| {r['model']} | {r['status']} | | | | {seconds} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", help="comma-separated (default: every classification model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.names.split(",") if args.names else torchvision.models.list_models(module=torchvision.models)
    rows = []
    for name in names:
        rows.append(check_isolated(name, args.threads))
        print(json.dumps(rows[-1]), flush=True)
    if args.markdown:
        print(markdown(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
