"""Progress of a run over all ranks: one tqdm bar on rank 0, per-rank counts for the summary.

Ranks add the examples they finish to counters in torch.distributed's key-value store (the one the
process group was created with: torchrun's store), so rank 0 can show the whole run's progress and
wait for the others without a collective (ranks have unequal work, and a barrier would time out).
"""

from __future__ import annotations

import time

import torch.distributed as dist
from tqdm.auto import tqdm

from .sharding import Ranks


class Progress:
    """Counts explained examples; rank 0 shows them (all ranks) on one bar.

    Parameters
    ----------
    ranks : Ranks
    total, initial : int
        Rows of the whole dataset, and rows already done (resumed parts).
    enabled : bool or None
        Show the bar: None = when stderr is a terminal (tqdm's rule), True/False = always/never.
    """

    def __init__(self, ranks: Ranks, total: int, initial: int, enabled: bool | None = None):
        self.ranks, self.initial, self.mine = ranks, initial, 0
        self.store = dist.PrefixStore("seqlrp/progress/", dist.distributed_c10d._get_default_store()) \
            if ranks.distributed else None
        show = enabled if ranks.rank == 0 else False
        self.bar = tqdm(total=total, initial=initial, unit=" examples", dynamic_ncols=True, smoothing=0.1,
                        disable=None if show is None else not show)

    def _refresh(self, done: int) -> None:
        self.bar.update(self.initial + done - self.bar.n)

    def update(self, count: int) -> None:
        """``count`` more examples explained by this rank."""
        self.mine += count
        if self.store is None:
            self._refresh(self.mine)
            return
        done = self.store.add("done", count)
        if self.ranks.rank == 0:
            self._refresh(done)

    def finish(self) -> list[int]:
        """This rank is done. Rank 0 waits for the others (the bar keeps moving); returns the examples
        explained by each rank in this run (on rank 0; on other ranks only their own count is known)."""
        if self.store is None:
            self.bar.close()
            return [self.mine]
        self.store.set(f"rank/{self.ranks.rank}", str(self.mine))
        self.store.add("finished", 1)
        if self.ranks.rank != 0:
            return [self.mine]
        while self.store.add("finished", 0) < self.ranks.world:
            self._refresh(self.store.add("done", 0))
            time.sleep(0.2)
        self._refresh(self.store.add("done", 0))
        self.bar.close()
        return [int(self.store.get(f"rank/{r}")) for r in range(self.ranks.world)]
