"""Shared timing helper for the benchmarks: 3 warm-up calls each, then the median of ``repeats`` rounds."""

from __future__ import annotations

import statistics
import time


def interleaved_medians(fns: dict, repeats: int, warmup: int = 3) -> dict:
    """Median seconds per function, the functions taking turns in each round (drift hits all alike)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}

