"""Shared timing helper for the benchmarks: 3 warm-up calls each, then the median of ``repeats`` rounds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(fns: dict, repeats: int, warmup: int = 3, sync: Callable[[], None] | None = None) -> dict:
    """Median seconds per function, the functions taking turns in each round (drift hits all alike).

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called before starting and before stopping each clock,
    so asynchronous device work is counted where it was queued.
    """
    sync = sync or (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def device_sync(device) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` for a CUDA device, else None (CPU work is synchronous)."""
    import torch

    device = torch.device(device)
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
