"""Whole datasets: throughput of ``seqlrp explain-dataset`` on SST-2 train, memory while streaming 1M sentences,
and determinism across process counts and batch sizes.

The model is the example BiLSTM (seqlrp.lstm.BiLSTMClassifier, e = d = 60, 2 classes) with seeded *random*
weights and the SST-2 training vocabulary: throughput does not depend on trained weights. Each configuration
runs the real command line as a subprocess; the RSS of every process (``/proc/PID/status``: VmRSS, VmHWM) is
sampled every 0.5 s.

    python benchmarks/dataset.py [--data ../shared/data/sst2] [--out out/bench-dataset] [--stream 1000000]
                                 [--skip-sst2] [--skip-stream]

Writes ``OUT/results.json`` and prints the tables of docs/datasets.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in MiB; empty when it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) / 1024
    return values


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc); also used by the tests to find a worker to kill."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def role(pid: int, root: int) -> str | None:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    if "resource_tracker" in command or "python" not in command:
        return None
    return "launcher" if pid == root else "worker"


def run(command: list[str], env: dict, interval: float = 0.5) -> dict:
    """Run ``command``; returns wall seconds, the stderr summary, per-process peak RSS and the RSS curve."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, tuple[str, float]] = {}
    curve: list[tuple[float, dict[int, float]]] = []
    while process.poll() is None:
        now = {}
        for pid in [process.pid, *descendants(process.pid)]:
            kind = role(pid, process.pid)
            values = status(pid)
            if kind and values:
                peaks[pid] = (kind, max(values["VmHWM"], peaks.get(pid, (kind, 0.0))[1]))
                now[pid] = values["VmRSS"]
        curve.append((time.perf_counter() - start, now))
        time.sleep(interval)
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{err[-3000:]}")
    summary = next((line for line in err.splitlines() if "examples explained" in line), "")
    return {"command": command, "seconds": time.perf_counter() - start, "summary": summary,
            "load_before": load, "load_after": os.getloadavg()[0],
            "peak_rss_mib": sorted(((kind, round(rss)) for kind, rss in peaks.values()), reverse=True),
            "curve": [(round(t, 1), round(sum(v.values()))) for t, v in curve],
            "curve_by_process": [(round(t, 1), {str(pid): round(rss) for pid, rss in v.items()}) for t, v in curve]}


def rate(summary: str) -> float:
    """examples/s of the run's own summary line (explaining only: no start-up)."""
    return float(summary.split("(")[1].split(" examples/s")[0])


def relevance(out: Path) -> tuple[np.ndarray, np.ndarray]:
    table = pads.dataset(out, format="parquet").to_table(columns=["id", "relevance"]).sort_by("id")
    values = table["relevance"].combine_chunks()
    return table["id"].to_numpy(), values.values.to_numpy(zero_copy_only=False)


def setup(data: Path, folder: Path) -> tuple[list[str], int]:
    """SST-2 train vocabulary and a seeded random BiLSTM (e = d = 60); returns the model options, vocab size."""
    from seqlrp.lstm import BiLSTMClassifier

    lines = (data / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    words = sorted({w for line in lines for w in line.rpartition("\t")[0].split()})
    vocab = ["<pad>", "<unk>", *words]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    torch.save(BiLSTMClassifier(len(vocab), 60, 60, 2, padding_idx=0).state_dict(), folder / "model.pt")
    options = ["--model", str(folder / "model.pt"), "--model-class", "seqlrp.lstm:BiLSTMClassifier",
               "--model-arg", f"vocab_size={len(vocab)}", "--model-arg", "embedding_dim=60", "--model-arg",
               "hidden_size=60", "--model-arg", "num_classes=2", "--model-arg", "padding_idx=0",
               "--vocab", str(folder / "vocab.txt"), "--lengths"]
    return options, len(vocab)


def generate(path: Path, count: int, vocab: list[str], seed: int = 0) -> None:
    """``count`` sentences of 1..24 words (SST-2 phrases have 1..52, 9 on average), written in blocks."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as file:
        for start in range(0, count, 10000):
            block = [" ".join(rng.choices(vocab, k=rng.randint(1, 24))) for _ in range(min(10000, count - start))]
            file.write("\n".join(block) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", default="out/bench-dataset")
    parser.add_argument("--stream", type=int, default=1_000_000)
    parser.add_argument("--skip-sst2", action="store_true")
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--only", action="append", help="run only the SST-2 configurations whose name contains this")
    args = parser.parse_args()
    out, data = Path(args.out), Path(args.data)
    model, _ = setup(data, out)
    python = [sys.executable]
    base = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = ["-m", "seqlrp", "explain-dataset", "--input", str(data / "train.tsv"), *model, "--overwrite"]
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    configs = {
        "1 process x 2 threads": (python + [*command, "--out", str(out / "p1")], base | {"OMP_NUM_THREADS": "2"}),
        "1 process x 1 thread": (python + [*command, "--out", str(out / "p1t1")], base | {"OMP_NUM_THREADS": "1"}),
        "2 processes x 1 thread (torchrun)": (python + ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                                                        *command, "--out", str(out / "p2")],
                                              base | {"OMP_NUM_THREADS": "1"}),
        "--workers 2": (python + [*command, "--workers", "2", "--out", str(out / "w2")], base),
        "1 process, batch 64 (10,000 rows)": (python + [*command, "--batch-size", "64", "--limit", "10000",
                                                        "--out", str(out / "b64")], base | {"OMP_NUM_THREADS": "2"}),
    }
    if not args.skip_sst2:
        for name, (cmd, env) in configs.items():
            if args.only and not any(part in name for part in args.only):
                continue
            print(f"running {name} ...", flush=True)
            result = run(cmd, env)
            result["bytes"] = sum(p.stat().st_size for p in Path(cmd[cmd.index("--out") + 1]).glob("part-*.parquet"))
            results[name] = {k: v for k, v in result.items() if k != "curve_by_process"}
            print(f"  {result['summary']}\n  wall {result['seconds']:.1f} s, peak RSS {result['peak_rss_mib']}, "
                  f"load {result['load_before']:.1f} -> {result['load_after']:.1f}", flush=True)
        ids1, r1 = relevance(out / "p1t1")
        determinism = {}
        for name, what in (("p2", "1 vs 2 processes (torchrun)"), ("w2", "1 vs 2 processes (--workers)"),
                           ("p1", "1 vs 2 threads")):
            ids, r = relevance(out / name)
            assert (ids == ids1).all() and r.shape == r1.shape
            determinism[what] = float(np.abs(r - r1).max())
        _, r2 = relevance(out / "p1")
        _, r = relevance(out / "b64")
        determinism["batch 256 vs 64 (first 10,000 rows, 2 threads)"] = float(np.abs(r - r2[: len(r)]).max())
        results["determinism"] = determinism
        print("max |relevance difference|:", determinism, flush=True)
        results_path.write_text(json.dumps(results, indent=1))
    if not args.skip_stream:
        vocab = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")[2:-1]
        path = out / "million.txt"
        if not path.exists() or sum(1 for _ in open(path, "rb")) != args.stream:
            generate(path, args.stream, vocab)
        cmd = python + ["-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "seqlrp", "explain-dataset",
                        "--input", str(path), *model, "--overwrite", "--out", str(out / "million")]
        print(f"streaming {args.stream} sentences ({path.stat().st_size / 1e6:.0f} MB) ...", flush=True)
        result = run(cmd, base | {"OMP_NUM_THREADS": "1"}, interval=2.0)
        result["bytes"] = sum(p.stat().st_size for p in (out / "million").glob("part-*.parquet"))
        result["input_bytes"] = path.stat().st_size
        results["stream"] = result
        print(f"  {result['summary']}\n  wall {result['seconds']:.0f} s, peak RSS {result['peak_rss_mib']}", flush=True)
        results_path.write_text(json.dumps(results, indent=1))
    for name, result in results.items():
        if name != "determinism":
            print(f"{name}: {result['summary']} | wall {result['seconds']:.1f} s | peak RSS {result['peak_rss_mib']}")
    print("determinism (max |relevance difference|):", results.get("determinism"))


if __name__ == "__main__":
    main()
