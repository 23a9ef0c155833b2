"""The model pool: slots with their state machine, and memory accounting per pool (GPU).

A slot is one backend process of one model, on one pool or split over several::

    PENDING --lease granted--> LOADING --ready--> READY --drain--> DRAINING --stopped--> STOPPED
       |                          |                 |                  ^
       +--denied/failed--> FAILED <--failed---------+    (any live state may drain)

Two sums per pool: ``promised_mb`` counts slots that will hold memory (PENDING, LOADING,
READY) and is what placement sees; ``used_mb`` counts memory actually leased (from the
``AcquireLease`` until ``SlotStopped``). A DRAINING slot has left ``promised_mb`` but not
``used_mb``, so its memory can be promised to a PENDING slot that waits for it.
``outside_mb`` is what other lease holders (and memory the ledger counts as foreign) hold on
the pool now, as the owner last reported it (``PoolOutside``): placement leaves it alone, but
it is temporary, so the questions "could this model ever fit" still use the full capacity.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from model_boss.scheduling._eviction import VictimCandidate
from model_boss.scheduling._types import PoolSpec, SlotId

__all__ = ["MemoryPool", "ModelPool", "Slot", "SlotState"]


class SlotState(enum.Enum):
    PENDING = "pending"
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


_LIVE = frozenset({SlotState.PENDING, SlotState.LOADING, SlotState.READY})


@dataclass(slots=True, eq=False)
class Slot:
    slot_id: SlotId
    model: str
    pools: tuple[str, ...]
    mb_per_pool: int
    created: float
    pinned: bool = False
    stay_warm_s: float = 300.0
    state: SlotState = SlotState.PENDING
    lease_requested: bool = False
    started: bool = False
    stop_sent: bool = False
    drain_reason: str = ""  # why it was drained; its StopSlot says so once it is idle
    evicted: bool = False  # drained to make room, not idled out or unloaded
    drain_error: bool = False  # drained for breaking a rule (overuse): its StopSlot says so
    inflight: int = 0
    last_used: float = 0.0
    last_priority: int = 10
    idle_version: int = 0
    victim: VictimCandidate | None = None  # the scheduler's cached eviction candidate
    # The usage watch (see _usage.py): leased beyond mb_per_pool (grown, or asked for),
    # the last measurement, and where the slot stands with an excess.
    extra_mb: dict[str, int] = field(default_factory=dict)
    used_mb: dict[str, int] = field(default_factory=dict)
    peak_mb: int = 0  # the most it was measured to use, summed over its pools
    growing: set[str] = field(default_factory=set)  # pools with a GrowLease unanswered
    refused: str = ""  # why the last grow was refused (empty: none refused since it fit)
    overuse_deadline: float = math.inf  # stopped then if still over its lease

    @property
    def live(self) -> bool:
        return self.state in _LIVE

    def share(self, pool_id: str) -> int:
        """MB leased for this slot on ``pool_id`` (its share, plus what it grew)."""
        return self.mb_per_pool + self.extra_mb.get(pool_id, 0)

    @property
    def total_mb(self) -> int:
        return self.mb_per_pool * len(self.pools)


@dataclass(slots=True)
class MemoryPool:
    pool_id: str
    capacity_mb: int
    promised_mb: int = 0
    used_mb: int = 0
    pinned_mb: int = 0  # promised to live pinned slots: never available to other models
    slots: dict[SlotId, Slot] = field(default_factory=dict)
    kind: str = "gpu"  # gpu or ram: see PoolSpec
    outside_mb: int = 0  # held by other programs now (PoolOutside); never ours to hand out

    @property
    def free_mb(self) -> int:
        """Memory neither promised to a live slot nor held outside: what placement may hand
        out (negative when others took more than was left)."""
        return self.capacity_mb - self.promised_mb - self.outside_mb

    @property
    def room_mb(self) -> int:
        """The most this scheduler could hold on the pool now, beside what others hold."""
        return max(0, self.capacity_mb - self.outside_mb)


class ModelPool:
    """Every slot and every pool; the only code that changes a slot's state."""

    def __init__(self, pools: Sequence[PoolSpec]) -> None:
        if not pools:
            raise ValueError("the scheduler needs at least one memory pool")
        self.pools: dict[str, MemoryPool] = {
            p.pool_id: MemoryPool(p.pool_id, p.capacity_mb, kind=p.kind) for p in pools
        }
        kinds = {p.kind for p in pools}
        self.default_kind = "gpu" if "gpu" in kinds else next(iter(kinds))
        self.slots: dict[SlotId, Slot] = {}
        self._next_id = 0

    def of_kind(self, kind: str | None = None) -> list[MemoryPool]:
        """The pools a model whose ``pool_kind`` is ``kind`` may use (None: the default)."""
        wanted = kind or self.default_kind
        return [p for p in self.pools.values() if p.kind == wanted]

    def largest_capacity(self, kind: str | None = None) -> int:
        return max((p.capacity_mb for p in self.of_kind(kind)), default=0)

    def total_capacity(self, kind: str | None = None) -> int:
        return sum(p.capacity_mb for p in self.of_kind(kind))

    def room_beside_pinned(self, kind: str | None = None) -> int:
        """The most memory any one pool of ``kind`` has that pinned slots do not hold."""
        return max((p.capacity_mb - p.pinned_mb for p in self.of_kind(kind)), default=0)

    def __iter__(self) -> Iterator[Slot]:
        return iter(self.slots.values())

    @property
    def largest_capacity_mb(self) -> int:
        return self.largest_capacity()

    @property
    def total_capacity_mb(self) -> int:
        return self.total_capacity()

    def create(
        self,
        model: str,
        pools: tuple[str, ...],
        mb_per_pool: int,
        now: float,
        *,
        pinned: bool = False,
        stay_warm_s: float = 300.0,
    ) -> Slot:
        self._next_id += 1
        slot = Slot(self._next_id, model, pools, mb_per_pool, now, pinned, stay_warm_s)
        slot.last_used = now
        self.slots[slot.slot_id] = slot
        for pool_id in pools:
            pool = self.pools[pool_id]
            pool.promised_mb += mb_per_pool
            if pinned:
                pool.pinned_mb += mb_per_pool
            pool.slots[slot.slot_id] = slot
        return slot

    def pin(self, slot: Slot) -> None:
        """Make a slot pinned: never a victim, and its memory off limits to other models."""
        if slot.pinned:
            return
        slot.pinned = True
        if slot.live:
            for pool_id in slot.pools:
                self.pools[pool_id].pinned_mb += slot.share(pool_id)

    def fits_beside_pinned(
        self, need_mb: int, *, splittable: bool, kind: str | None = None, outside: bool = False
    ) -> bool:
        """Could a slot of ``need_mb`` MB ever be placed (on pools of ``kind``) without
        touching pinned slots? With ``outside``, beside what other programs hold now too:
        could it be placed now if every unpinned slot were gone?"""
        room = sorted(
            (
                p.capacity_mb - p.pinned_mb - (p.outside_mb if outside else 0)
                for p in self.of_kind(kind)
            ),
            reverse=True,
        )
        if not room:
            return False
        if room[0] >= need_mb:
            return True
        if not splittable:
            return False
        # An even split over k pools needs k pools with room for a share each.
        return any(room[k - 1] >= -(-need_mb // k) for k in range(2, len(room) + 1))

    @property
    def room_beside_pinned_mb(self) -> int:
        """The most memory any one default pool has that pinned slots do not hold."""
        return self.room_beside_pinned()

    @property
    def pinned_mb(self) -> int:
        return sum(p.pinned_mb for p in self.pools.values())

    def can_lease(self, slot: Slot) -> bool:
        """True once every pool of a PENDING slot physically has its memory free (beside
        what is held outside)."""
        return all(
            (pool := self.pools[p]).capacity_mb - pool.used_mb - pool.outside_mb >= slot.mb_per_pool
            for p in slot.pools
        )

    def lease_requested(self, slot: Slot) -> None:
        assert slot.state is SlotState.PENDING
        assert not slot.lease_requested
        slot.lease_requested = True
        for pool_id in slot.pools:
            self.pools[pool_id].used_mb += slot.mb_per_pool

    def loading(self, slot: Slot) -> bool:
        if slot.state is not SlotState.PENDING or not slot.lease_requested:
            return False
        slot.state = SlotState.LOADING
        slot.started = True
        return True

    def ready(self, slot: Slot, now: float) -> bool:
        if slot.state is not SlotState.LOADING:
            return False
        slot.state = SlotState.READY
        slot.last_used = now
        return True

    def drain(self, slot: Slot) -> bool:
        """Take a live slot out of service; its memory stays used until ``stopped``."""
        if not slot.live:
            return False
        self._unpromise(slot)
        slot.state = SlotState.DRAINING
        return True

    def stopped(self, slot: Slot) -> bool:
        if slot.state is SlotState.STOPPED or slot.state is SlotState.FAILED:
            return False
        if slot.live:
            self._unpromise(slot)
        self._finish(slot, SlotState.STOPPED)
        return True

    def failed(self, slot: Slot) -> bool:
        if slot.state is SlotState.STOPPED or slot.state is SlotState.FAILED:
            return False
        if slot.live:
            self._unpromise(slot)
        self._finish(slot, SlotState.FAILED)
        return True

    def grow(self, slot: Slot, pool_id: str, mb: int) -> None:
        """Count ``mb`` more (less, if negative) leased for ``slot`` on ``pool_id``.

        Only for a slot whose lease is taken; a live slot's promise grows with it."""
        assert slot.lease_requested
        assert pool_id in slot.pools
        assert slot.state not in (SlotState.STOPPED, SlotState.FAILED)
        slot.extra_mb[pool_id] = slot.extra_mb.get(pool_id, 0) + mb
        slot.victim = None  # its cached eviction candidate frees a different amount now
        pool = self.pools[pool_id]
        pool.used_mb += mb
        if slot.live:
            pool.promised_mb += mb
            if slot.pinned:
                pool.pinned_mb += mb

    def _unpromise(self, slot: Slot) -> None:
        for pool_id in slot.pools:
            pool = self.pools[pool_id]
            share = slot.share(pool_id)
            pool.promised_mb -= share
            if slot.pinned:
                pool.pinned_mb -= share

    def _finish(self, slot: Slot, state: SlotState) -> None:
        for pool_id in slot.pools:
            pool = self.pools[pool_id]
            if slot.lease_requested:
                pool.used_mb -= slot.share(pool_id)
            pool.slots.pop(slot.slot_id, None)
        slot.state = state
        self.slots.pop(slot.slot_id, None)
