"""Load planning: which cold models get a slot, where, and what is evicted for them.

A mixin of :class:`~model_boss.scheduling.Scheduler`, kept apart because it is the part with
the subtle reasoning (see DESIGN.md): the cold-model index, batching, the bounded wait before
busy slots may be drained, and the per-round snapshot of eviction candidates.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from model_boss.scheduling._effects import AcquireLease, Effect, LoadRefused, Reject
from model_boss.scheduling._events import PoolOutside
from model_boss.scheduling._eviction import VictimCandidate
from model_boss.scheduling._placement import Placement, PoolView, place
from model_boss.scheduling._pool import ModelPool, Slot, SlotState
from model_boss.scheduling._queue import CooldownGate, RequestQueue
from model_boss.scheduling._types import ModelProfile, SchedulerConfig

__all__ = ["LoadPlanner", "ModelState", "head_key"]


@dataclass(slots=True, eq=False)
class ModelState:
    """The scheduler's state for one model of the manifest."""

    profile: ModelProfile
    vram_mb: int
    slots: list[Slot] = field(default_factory=list)
    demand: float = 0.0  # decayed arrival count, times Scheduler._growth (see _on_arrived)
    cold_seq: int = 0  # seq of this model's live entry in Scheduler._cold, 0 if none
    wake_at: float = -math.inf  # this model's earliest pending wakeup
    retry_at: float = -math.inf
    pin_want: int = 0  # pinned replicas asked for (manifest pin or AdminLoad); 0 once unloaded
    repin_at: float = math.inf  # when to try again to bring back a pinned replica that failed
    pin_failures: int = 0  # in a row, for the back-off
    overuse_strikes: int = 0  # slots stopped in a row for using more than their lease
    overuse_last: str = ""  # why the last one was stopped
    overuse_refused: str = ""  # why the model is refused (kept exceeding), until AdminLoad
    denied_pools: tuple[str, ...] = ()  # where its last lease was denied (until one is granted)
    # Since when only what other programs hold keeps it from being placed (inf: not so),
    # and when its first queued request has waited outside_wait_s for that (_outside_bound).
    outside_since: float = math.inf
    outside_due: float = math.inf


class LoadPlanner:
    """Planning state and methods; :class:`Scheduler` owns the attributes declared here."""

    config: SchedulerConfig
    models: dict[str, ModelState]
    pool: ModelPool
    queue: RequestQueue
    gate: CooldownGate
    _cold: list[tuple[float, int, str]]
    _wakeups: list[tuple[float, str]]
    _pending: list[Slot]
    _pending_dirty: bool
    _snap: dict[str, list[tuple[Slot, VictimCandidate, float]]] | None
    _blocked: bool
    _blocked_key: float
    _blocked_need: int
    _loads_dirty: bool

    def _drain(self, slot: Slot, out: list[Effect], reason: str, *, evicted: bool = False) -> None:
        raise NotImplementedError

    def _reject_crowded(self, m: ModelState, now: float, out: list[Effect]) -> None:
        raise NotImplementedError

    def _forget_slot(self, slot: Slot) -> None:
        raise NotImplementedError

    def _mark_cold(self, m: ModelState, now: float) -> bool:
        """Index ``m`` by its head's key if it needs a new slot; True if it does."""
        head = self.queue.head(m.profile.model_id)
        if head is None or not self._needs_slot(m, now):
            return False
        if m.cold_seq != head.seq:
            m.cold_seq = head.seq
            heapq.heappush(self._cold, (head.key, head.seq, m.profile.model_id))
        return True

    def _may_unblock(self, slot: Slot) -> bool:
        """Could ``slot`` going idle let the blocked head load? (A cheap necessary test.)"""
        need = self._blocked_need
        for pool_id in slot.pools:
            pool = self.pool.pools[pool_id]
            idle = sum(
                s.mb_per_pool
                for s in pool.slots.values()
                if s.state is SlotState.READY and s.inflight == 0 and not s.pinned
            )
            if pool.free_mb + idle >= need:
                return True
        return False

    def _fits(self, m: ModelState) -> bool:
        kind = m.profile.pool_kind
        if m.vram_mb <= self.pool.largest_capacity(kind):
            return True
        return m.profile.splittable and m.vram_mb <= self.pool.total_capacity(kind)

    def _needs_slot(self, m: ModelState, now: float) -> bool:
        if m.retry_at > now or m.overuse_refused:
            return False
        waiting = self.queue.count(m.profile.model_id)
        if not waiting:
            return False
        if not m.slots:
            return True
        if len(m.slots) >= m.profile.replica_max:
            return False
        coming = 0
        limit = m.profile.target_inflight
        for s in m.slots:
            if s.state is SlotState.READY:
                if s.inflight < limit:
                    return False
            else:
                coming += limit
        return waiting > coming

    def _plan_loads(self, now: float, out: list[Effect]) -> None:
        cfg = self.config
        queue = self.queue
        self._blocked = False
        self._blocked_key = math.inf
        self._snap = None
        cold = self._pop_cold(now, cfg.load_lookahead)
        if not cold:
            return
        keys = {mid: head_key(queue, mid) for mid in cold}
        horizon = keys[cold[0]] + cfg.batch_window_s
        target = max((mid for mid in cold if keys[mid] <= horizon), key=queue.count)
        order = [target, *(c for c in cold if c != target)]
        for i, mid in enumerate(order):
            m = self.models[mid]
            plan = self._placement(m, keys[mid], now)
            if (
                plan is None
                and not m.slots
                and not self.pool.fits_beside_pinned(
                    m.vram_mb, splittable=m.profile.splittable, kind=m.profile.pool_kind
                )
            ):
                self._reject_crowded(m, now, out)  # pinned models took the room since it queued
                continue
            if plan is not None or m.slots or not self._outside_blocked(m):
                m.outside_since = m.outside_due = math.inf
            elif self._outside_bound(m, now, out):
                continue  # every request of it waited its bound for other programs: answered
            if plan is None:
                self._blocked = True
                self._blocked_key = keys[cold[0]]
                largest = self.pool.largest_capacity(m.profile.pool_kind)
                self._blocked_need = m.vram_mb if m.vram_mb <= largest else 0
                for rest in order[i:]:
                    r = self.models[rest]
                    if (
                        r is not m
                        and not r.slots
                        and self._outside_blocked(r)
                        and self.pool.fits_beside_pinned(
                            r.vram_mb, splittable=r.profile.splittable, kind=r.profile.pool_kind
                        )
                        and self._outside_bound(r, now, out)  # its wait is bounded too
                    ):
                        continue
                    self._mark_cold(r, now)
                return
            self._execute(m, plan, now, out, pinned=False, reason=f"room for {mid}")
            self._mark_cold(m, now)  # more replicas may still be needed

    def _pop_cold(self, now: float, limit: int) -> list[str]:
        """Up to ``limit`` models that need a slot, best head first, out of ``_cold``."""
        cold: list[str] = []
        heap = self._cold
        while heap and len(cold) < limit:
            _, seq, mid = heapq.heappop(heap)
            m = self.models[mid]
            if m.cold_seq != seq:
                continue  # superseded by a newer entry
            m.cold_seq = 0
            head = self.queue.head(mid)
            if head is None:
                continue
            if head.seq != seq:
                self._mark_cold(m, now)  # its head changed: file it under the new key
            elif self._needs_slot(m, now):
                cold.append(mid)
        return cold

    def _placement(self, m: ModelState, key: float, now: float) -> Placement | None:
        splittable = m.profile.splittable
        pools = self.pool.of_kind(m.profile.pool_kind)
        free = [PoolView(p.pool_id, p.room_mb, p.free_mb) for p in pools]
        plan = place(m.vram_mb, free, splittable=splittable, allow_evict=False)
        if plan is not None:
            return plan
        single_ok = self.pool.room_beside_pinned(m.profile.pool_kind) >= m.vram_mb
        views = self._views(m, now, None)
        plan = place(m.vram_mb, views, splittable=splittable, single_ok=single_ok)
        if plan is not None:
            return plan
        wait_until = key + self.config.busy_evict_after_s
        if now < wait_until:
            self._wake(m, wait_until, now)
            return None
        views = self._views(m, now, key)
        plan = place(m.vram_mb, views, splittable=splittable, allow_busy=True, single_ok=single_ok)
        if plan is None:  # memory held by loading or pinned slots: look again later
            retry_at = now + max(1.0, self.config.busy_evict_after_s)
            self._wake(m, retry_at, now)
        return plan

    def _wake(self, m: ModelState, at: float, now: float) -> None:
        """Ask for a planning round at ``at`` for ``m`` (one pending wakeup per model)."""
        if now < m.wake_at <= at:
            return
        m.wake_at = at
        heapq.heappush(self._wakeups, (at, m.profile.model_id))

    def _views(self, m: ModelState, now: float, busy_key: float | None) -> list[PoolView]:
        """Each pool's free memory and eviction candidates (slots of other models).

        With ``busy_key`` set, busy slots are candidates too, unless their model has queued
        work that sorts ahead of ``busy_key``. Candidates are computed once per planning
        round (``_snapshot``); slots drained since then are skipped.
        """
        if self._snap is None:
            self._snap = self._snapshot(now)
        views = []
        mid = m.profile.model_id
        ready = SlotState.READY
        for pool in self.pool.of_kind(m.profile.pool_kind):
            cands = tuple(
                c
                for s, c, head_key in self._snap[pool.pool_id]
                if s.state is ready
                and s.model != mid
                and (not c.busy or (busy_key is not None and head_key > busy_key))
            )
            views.append(PoolView(pool.pool_id, pool.room_mb, pool.free_mb, cands))
        return views

    def _snapshot(self, now: float) -> dict[str, list[tuple[Slot, VictimCandidate, float]]]:
        queue = self.queue
        count = queue.count
        ready = SlotState.READY
        models = self.models
        drain_serving = self.config.drain_serving_for_cold
        snap: dict[str, list[tuple[Slot, VictimCandidate, float]]] = {}
        for pool in self.pool.pools.values():
            rows: list[tuple[Slot, VictimCandidate, float]] = []
            append = rows.append
            for s in pool.slots.values():
                if s.state is not ready or s.pinned:
                    continue
                waiting = count(s.model)
                busy = waiting > 0 or (s.inflight > 0 and not drain_serving)
                cand = s.victim
                if (
                    cand is None
                    or cand.busy is not busy
                    or cand.demand != models[s.model].demand
                    or cand.last_priority != s.last_priority
                ):
                    cand = self._candidate(s, busy)
                append((s, cand, head_key(queue, s.model) if waiting else math.inf))
            snap[pool.pool_id] = rows
        return snap

    def _candidate(self, s: Slot, busy: bool) -> VictimCandidate:
        m = self.models[s.model]
        demand = m.demand  # in units that only make sense relative to other models
        s.victim = cand = VictimCandidate(
            s.slot_id,
            # What it frees in each of its pools (with what it grew, see _usage.py).
            min(s.share(p) for p in s.pools) if s.extra_mb else s.mb_per_pool,
            m.profile.load_s,
            demand,
            s.last_priority,
            s.pinned,
            busy,
            self.config.eviction_priority_exponent,
        )
        return cand

    def _execute(
        self,
        m: ModelState,
        plan: Placement,
        now: float,
        out: list[Effect],
        *,
        pinned: bool,
        reason: str,
    ) -> None:
        for sid in plan.victims:
            victim = self.pool.slots.get(sid)
            if victim is not None:
                self._drain(victim, out, reason, evicted=True)
        slot = self.pool.create(
            m.profile.model_id,
            plan.pools,
            plan.mb_per_pool,
            now,
            pinned=pinned,
            stay_warm_s=m.profile.default_stay_warm_s,
        )
        m.slots.append(slot)
        m.outside_since = m.outside_due = math.inf
        self._pending.append(slot)
        self._pending_dirty = True

    def _advance_pending(self, out: list[Effect]) -> None:
        still: list[Slot] = []
        for slot in self._pending:
            if slot.state is not SlotState.PENDING or slot.lease_requested:
                continue
            if not self.pool.can_lease(slot):
                still.append(slot)
                continue
            self.pool.lease_requested(slot)
            head = self.queue.head(slot.model)
            priority = 1 if slot.pinned else (head.priority if head is not None else 10)
            out.append(
                AcquireLease(slot.slot_id, slot.model, slot.pools, slot.mb_per_pool, priority)
            )
        self._pending = still

    def _load_replicas(self, m: ModelState, want: int, now: float, out: list[Effect]) -> None:
        m.pin_want = want
        m.repin_at = math.inf
        for slot in m.slots:
            self.pool.pin(slot)
        self._snap = None  # a planning round's candidates are stale by now
        for _ in range(want - len(m.slots)):
            single_ok = self.pool.room_beside_pinned(m.profile.pool_kind) >= m.vram_mb
            views = self._views(m, now, None)
            plan = place(m.vram_mb, views, splittable=m.profile.splittable, single_ok=single_ok)
            if plan is None:
                if not m.slots:  # with some replicas placed, the load goes on with those
                    out.append(LoadRefused(m.profile.model_id, self._no_room_reason(m)))
                return
            self._execute(m, plan, now, out, pinned=True, reason=f"load {m.profile.model_id}")

    def _no_room_reason(self, m: ModelState) -> str:
        held = [p for p in self.pool.of_kind(m.profile.pool_kind) if p.outside_mb > 0]
        if not held:
            return "not enough free memory"
        others = ", ".join(f"{p.pool_id}={p.outside_mb} MB" for p in held)
        return f"not enough free memory for {m.vram_mb} MB (other programs hold {others})"

    # -- memory held outside the scheduler (PoolOutside) ------------------------------------

    def _on_pool_outside(self, ev: PoolOutside, out: list[Effect]) -> None:
        pool = self.pool.pools.get(ev.pool)
        mb = max(0, int(ev.mb))
        if pool is None or mb == pool.outside_mb:
            return
        pool.outside_mb = mb
        self._loads_dirty = True  # less room: evict for what waits; more: a blocked load fits
        self._pending_dirty = True
        if pool.free_mb < 0:
            self._unplace(pool.pool_id, ev.now)
        for m in self.models.values():
            if ev.pool in m.denied_pools and (
                m.retry_at > ev.now or (m.pin_want > len(m.slots) and m.repin_at > ev.now)
            ):
                self._retry_denied(m, ev.now)  # denied on this pool: the books know more now

    def _unplace(self, pool_id: str, now: float) -> None:
        """Others took room that slots waiting to ask for their lease were placed in: take
        them back (newest first) until the pool's promises fit again; planning places them
        anew, evicting more or waiting."""
        pool = self.pool.pools[pool_id]
        for slot in reversed(self._pending):
            if pool.free_mb >= 0:
                return
            if (
                slot.state is not SlotState.PENDING
                or slot.lease_requested
                or pool_id not in slot.pools
            ):
                continue
            m = self.models[slot.model]
            self._forget_slot(slot)
            self.pool.stopped(slot)
            if slot.pinned:
                self._retry_denied(m, now)

    def _outside_blocked(self, m: ModelState) -> bool:
        """Would ``m`` (which fits beside the pinned slots) not fit even with every unpinned
        slot gone, because of what other programs hold now?"""
        return not self.pool.fits_beside_pinned(
            m.vram_mb, splittable=m.profile.splittable, kind=m.profile.pool_kind, outside=True
        )

    def _outside_bound(self, m: ModelState, now: float, out: list[Effect]) -> bool:
        """``m`` is blocked only by what other programs hold: answer 503 the requests that
        have waited ``outside_wait_s`` for that, and wake up for the next one. True if none
        is left queued."""
        wait = self.config.outside_wait_s
        mid = m.profile.model_id
        if m.outside_since == math.inf:
            m.outside_since = now
            m.outside_due = now + wait  # no request of it can be due before this
        since = m.outside_since
        if now >= m.outside_due:
            due = self.queue.take(mid, lambda r: max(r.arrived, since) + wait <= now)
            if due:
                reason = self._outside_reason(m)
                for req in due:
                    self.gate.left_queue(req, now, dispatched=False)
                    out.append(Reject(req.request_id, reason, 503, self.config.retry_after_s))
                self._loads_dirty = True
            waiting = self.queue.waiting(mid)
            if not waiting:
                m.outside_since = m.outside_due = math.inf
                return True
            m.outside_due = min(max(r.arrived, since) for r in waiting) + wait
        self._wake(m, m.outside_due, now)
        return False

    def _outside_reason(self, m: ModelState) -> str:
        pools = self.pool.of_kind(m.profile.pool_kind)
        held = [
            f"the coordinator's pinned models hold {p.pinned_mb} MB and other programs "
            f"{p.outside_mb} MB of {p.capacity_mb} MB"
            for p in pools
        ]
        if len(pools) == 1:
            where = f"{m.vram_mb} MB on {pools[0].pool_id}; {held[0]}"
        else:
            where = f"{m.vram_mb} MB; " + ", ".join(
                f"on {p.pool_id} {h}" for p, h in zip(pools, held, strict=True)
            )
        return f"model {m.profile.model_id!r} needs {where}: try again later"

    def _short_beside_outside(self, pools: tuple[str, ...], mb_per_pool: int) -> bool:
        """Does memory held outside leave less than ``mb_per_pool`` free on one of ``pools``?"""
        return any(
            (p := self.pool.pools[pool_id]).outside_mb > 0 and p.free_mb < mb_per_pool
            for pool_id in pools
        )

    def _retry_denied(self, m: ModelState, now: float) -> None:
        """Plan ``m`` again in this round (a pinned model: its replicas), without the back-off
        of a lease denial: the books now account for what the denial was about."""
        m.retry_at = -math.inf
        if m.pin_want > len(m.slots):
            m.repin_at = now
            self._wake(m, now, now)
        self._mark_cold(m, now)
        self._loads_dirty = True

    def _pinned_slot_lost(self, m: ModelState, now: float) -> None:
        """A pinned replica was denied its lease or failed: try again later, backing off
        (5 s, 10 s, ... up to 5 minutes) while it keeps failing."""
        if m.pin_want <= 0:
            return
        backoff = min(300.0, self.config.retry_after_s * 2 ** min(m.pin_failures, 6))
        m.pin_failures += 1
        m.repin_at = now + backoff
        self._wake(m, m.repin_at, now)

    def _repin_due(self, m: ModelState, now: float, out: list[Effect]) -> None:
        if m.repin_at > now:
            if m.repin_at < math.inf:
                self._wake(m, m.repin_at, now)  # an earlier wakeup of this model fired first
            return
        m.repin_at = math.inf
        if m.pin_want > len(m.slots):
            self._load_replicas(m, m.pin_want, now, out)
            if m.pin_want > len(m.slots):  # no room yet: keep trying, backing off
                self._pinned_slot_lost(m, now)

    def _start_pinned(self, now: float, out: list[Effect]) -> None:
        for m in self.models.values():
            if m.profile.pin:
                self._load_replicas(m, m.profile.replicas, now, out)


def head_key(queue: RequestQueue, model: str) -> float:
    head = queue.head(model)
    return math.inf if head is None else head.key
