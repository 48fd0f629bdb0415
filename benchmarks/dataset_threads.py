"""Threads of a single ``seqlrp explain-dataset`` process: the count seqlrp chooses (the free cores, from the
load average) against a fixed 2 threads (torch's default on the 2-core machine) and 1 thread.

The first ``--limit`` rows of SST-2 train through the BiLSTM of benchmarks/dataset.py (seeded random weights,
e = d = 60, ``--lengths``, batch 256). Each configuration runs the real command line as a subprocess; the rate
is the run's own summary (explaining only, no start-up); the load average is read before and after.

    python benchmarks/dataset_threads.py [--data ../shared/data/sst2] [--out out/bench-dataset-threads]
                                         [--limit 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset import DATA, ROOT, rate, run, setup  # noqa: E402 - the helpers of benchmarks/dataset.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", default="out/bench-dataset-threads")
    parser.add_argument("--limit", type=int, default=10000)
    args = parser.parse_args()
    out, data = Path(args.out), Path(args.data)
    model, _ = setup(data, out)
    base = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "seqlrp", "explain-dataset", "--input", str(data / "train.tsv"), *model,
               "--limit", str(args.limit), "--overwrite"]
    configs = {"threads chosen by seqlrp": base, "OMP_NUM_THREADS=2": base | {"OMP_NUM_THREADS": "2"},
               "OMP_NUM_THREADS=1": base | {"OMP_NUM_THREADS": "1"}}
    results = {}
    for k, (name, env) in enumerate(configs.items()):
        result = run([*command, "--out", str(out / f"run{k}")], env)
        results[name] = {"examples_per_s": rate(result["summary"]), "summary": result["summary"],
                         "load_before": result["load_before"], "load_after": result["load_after"]}
        print(f"{name}: {results[name]['examples_per_s']:.0f} examples/s (load {result['load_before']:.1f} -> "
              f"{result['load_after']:.1f})\n  {result['summary']}", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
