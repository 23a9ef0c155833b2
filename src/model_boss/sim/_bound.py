"""An offline bound on the number of model loads a trace needs.

The bound replays the models of the trace in arrival order as a paging problem:

* **equal sizes** (every model the same size ``s``): the pools hold ``k = sum(cap // s)``
  models at once, and Belady's farthest-next-use rule gives the exact minimum number of
  loads for serving the sequence in order (``exact=True``).
* **mixed sizes**: no schedule ever holds more than ``K`` models at once, where ``K`` is the
  largest number of the trace's smallest models that fit in the total memory. Belady with
  cache size ``K`` is therefore a lower bound on the loads of any schedule that serves the
  sequence in order (``exact=False``); it is optimistic, often far from reachable.

Both are about in-order service; a scheduler that batches queued requests of one model can
occasionally beat them, which the benchmark then shows as a ratio below 1.

Belady knows the future, so no online policy can be expected to reach it. Where the bound is
exact the benchmark also reports :func:`popularity_oracle_loads`: the policy "A0" (on a miss,
evict the cached model least popular over the whole trace), told the trace's true
popularities in advance, on the same in-order sequence. When requests pick their model
independently of the past (the generated traces: Zipf draws), A0 has the fewest expected
misses of any online policy (Aho, Denning and Ullman, "Principles of optimal page
replacement", JACM 1971). So on such a trace ``A0 / Belady`` is a floor no online scheduler
can be expected to go below, even one whose loads and requests took no time.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["LoadBound", "belady_loads", "load_bound", "popularity_oracle_loads"]


@dataclass(frozen=True, slots=True)
class LoadBound:
    loads: int
    exact: bool
    capacity_models: int
    method: str
    #: A0 with the trace's true popularities, same capacity; None where sizes differ.
    oracle_loads: int | None = None


def belady_loads(sequence: Sequence[str], capacity: int) -> int:
    """Minimum misses for ``sequence`` with a cache of ``capacity`` equal-size entries."""
    if capacity < 1:
        raise ValueError("capacity must be >= 1")
    n = len(sequence)
    next_use = [0] * n
    last: dict[str, int] = {}
    for i in range(n - 1, -1, -1):
        next_use[i] = last.get(sequence[i], n + i)
        last[sequence[i]] = i
    cached: dict[str, int] = {}  # model -> its next use
    heap: list[tuple[int, str]] = []  # (-next use, model), stale entries skipped
    misses = 0
    for i, model in enumerate(sequence):
        nxt = next_use[i]
        if model in cached:
            cached[model] = nxt
            heapq.heappush(heap, (-nxt, model))
            continue
        misses += 1
        if len(cached) >= capacity:
            while True:
                neg, victim = heapq.heappop(heap)
                if cached.get(victim) == -neg:
                    del cached[victim]
                    break
        cached[model] = nxt
        heapq.heappush(heap, (-nxt, model))
    return misses


def popularity_oracle_loads(sequence: Sequence[str], capacity: int) -> int:
    """Misses of A0 on ``sequence``: evict the cached entry least frequent in the whole of it.

    Ties go to the entry that appears later in the trace's frequency order (deterministic).
    """
    if capacity < 1:
        raise ValueError("capacity must be >= 1")
    counts: dict[str, int] = {}
    for model in sequence:
        counts[model] = counts.get(model, 0) + 1
    # rank 0 = most popular; evicting the highest rank among the cached is A0
    order = sorted(counts, key=lambda m: (-counts[m], m))
    rank = {m: i for i, m in enumerate(order)}
    cached: set[str] = set()
    heap: list[int] = []  # -rank of every cached model (a max-heap on rank)
    misses = 0
    for model in sequence:
        if model in cached:
            continue
        misses += 1
        if len(cached) >= capacity:
            cached.discard(order[-heapq.heappop(heap)])
        cached.add(model)
        heapq.heappush(heap, -rank[model])
    return misses


def load_bound(
    sequence: Sequence[str], sizes_mb: Mapping[str, int], pools_mb: Sequence[int]
) -> LoadBound:
    """The load bound for ``sequence`` (model ids in arrival order) on ``pools_mb``."""
    used = sorted({sizes_mb[m] for m in set(sequence)})
    if not used:
        return LoadBound(0, True, 0, "empty")
    if len(used) == 1:
        size = used[0]
        k = sum(cap // size for cap in pools_mb)
        k = max(1, k)
        return LoadBound(
            belady_loads(sequence, k),
            True,
            k,
            "belady-equal-sizes",
            oracle_loads=popularity_oracle_loads(sequence, k),
        )
    sizes = sorted(sizes_mb[m] for m in set(sequence))
    total = sum(pools_mb)
    k = 0
    acc = 0
    for s in sizes:
        if acc + s > total:
            break
        acc += s
        k += 1
    return LoadBound(belady_loads(sequence, max(1, k)), False, k, "belady-relaxed-mixed-sizes")
