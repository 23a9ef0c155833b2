"""Placement: which pool (GPU) or pools a new slot goes to. A pure function of its arguments.

1. Best fit: the pool whose free memory is the smallest that still holds the model.
2. Otherwise the pool where the victims needed (see ``_eviction``) cost least.
3. A model that no single pool can take (larger than every pool, or pinned slots leave too
   little room on each) is split evenly over the fewest pools that can hold a share each, if
   its backend can split; each pool may need its own victims.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from model_boss.scheduling._eviction import Cost, VictimCandidate, select
from model_boss.scheduling._types import SlotId

__all__ = ["Placement", "PoolView", "place"]


@dataclass(frozen=True, slots=True)
class PoolView:
    pool_id: str
    capacity_mb: int
    free_mb: int
    candidates: tuple[VictimCandidate, ...] = ()


@dataclass(frozen=True, slots=True)
class Placement:
    pools: tuple[str, ...]
    mb_per_pool: int
    victims: tuple[SlotId, ...] = ()
    busy_victims: tuple[SlotId, ...] = ()
    cost: Cost = (0, 0.0)


def place(
    need_mb: int,
    pools: Sequence[PoolView],
    *,
    splittable: bool = False,
    allow_evict: bool = True,
    allow_busy: bool = False,
    single_ok: bool = True,
) -> Placement | None:
    """Where a slot of ``need_mb`` MB should go, and what must be stopped first.

    ``single_ok=False`` says no single pool can ever hold it (pinned slots leave too little
    room on each), so a splittable model is split even if it is smaller than a pool.
    """
    fitting = [p for p in pools if p.free_mb >= need_mb]
    if fitting:
        best = min(fitting, key=lambda p: (p.free_mb, p.pool_id))
        return Placement((best.pool_id,), need_mb)
    largest = max((p.capacity_mb for p in pools), default=0)
    if need_mb <= largest and single_ok:
        return _single(need_mb, pools, allow_evict, allow_busy) if allow_evict else None
    if not splittable:
        return None
    for k in range(2, len(pools) + 1):
        share = math.ceil(need_mb / k)
        plan = _split(share, k, pools, allow_evict, allow_busy)
        if plan is not None:
            return plan
    return None


def _plan_for(
    pool: PoolView, share: int, allow_evict: bool, allow_busy: bool
) -> tuple[Cost, int, list[VictimCandidate]] | None:
    if pool.capacity_mb < share:
        return None
    if pool.free_mb >= share:
        return (0, 0.0), pool.free_mb - share, []
    if not allow_evict:
        return None
    chosen = select(share - pool.free_mb, pool.candidates, allow_busy=allow_busy)
    if chosen is None:
        return None
    cost, victims = chosen
    return cost, pool.free_mb + sum(v.mb for v in victims) - share, victims


def _single(
    need_mb: int, pools: Sequence[PoolView], allow_evict: bool, allow_busy: bool
) -> Placement | None:
    best: tuple[Cost, int, str, list[VictimCandidate]] | None = None
    for pool in pools:
        plan = _plan_for(pool, need_mb, allow_evict, allow_busy)
        if plan is None:
            continue
        cand = (plan[0], plan[1], pool.pool_id, plan[2])
        if best is None or cand[:3] < best[:3]:
            best = cand
    if best is None:
        return None
    return _placement((best[2],), need_mb, best[3], best[0])


def _split(
    share: int, k: int, pools: Sequence[PoolView], allow_evict: bool, allow_busy: bool
) -> Placement | None:
    plans: list[tuple[Cost, int, str, list[VictimCandidate]]] = []
    for pool in pools:
        plan = _plan_for(pool, share, allow_evict, allow_busy)
        if plan is not None:
            plans.append((plan[0], plan[1], pool.pool_id, plan[2]))
    if len(plans) < k:
        return None
    plans.sort(key=lambda p: p[:3])
    chosen = plans[:k]
    victims = [v for plan in chosen for v in plan[3]]
    pool_ids = tuple(sorted(plan[2] for plan in chosen))
    cost = (sum(plan[0][0] for plan in chosen), sum(plan[0][1] for plan in chosen))
    return _placement(pool_ids, share, victims, cost)


def _placement(
    pools: tuple[str, ...], mb: int, victims: list[VictimCandidate], cost: Cost
) -> Placement:
    ids = tuple(dict.fromkeys(v.slot_id for v in victims))
    busy = tuple(dict.fromkeys(v.slot_id for v in victims if v.busy))
    return Placement(pools, mb, ids, busy, cost)
