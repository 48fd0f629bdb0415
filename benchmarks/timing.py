"""Shared timing helper for the benchmarks: 3 warm-up calls, then the median of ``repeats``."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
