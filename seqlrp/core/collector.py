"""Python's cyclic garbage collector paused while an explanation runs.

An explanation builds a few thousand short-lived container objects (the canonized and wrapped copies of
the model's modules, one :class:`~seqlrp.core.function.LayerCall` and one autograd context per layer
call). They die by reference counting when the call returns (:func:`~seqlrp.core.copying.release` breaks
the cycles the wrapped forwards would form), so a collection during the call only scans them in vain —
and, because they live long enough to be promoted, they make the collector's full collections (every
object of the process: ~0.5 million with torch and timm imported, ~200 ms) come every few calls.
Paused, they never reach the old generation. The collector's state is restored when the call ends,
also on an error; if it was already off, it stays off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause automatic cyclic garbage collection (``gc.disable``) for the block, then restore it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
