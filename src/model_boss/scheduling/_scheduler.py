"""The scheduler: one pure state machine, events in, effects out (see DESIGN.md beside it)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from model_boss.scheduling._effects import (
    AbortRequest,
    Dispatch,
    Effect,
    LoadRefused,
    Reject,
    ReleaseLease,
    StartSlot,
    StopSlot,
)
from model_boss.scheduling._events import (
    AdminLoad,
    AdminUnload,
    Event,
    LeaseDenied,
    LeaseGranted,
    LeaseGrown,
    PoolOutside,
    PreemptAsked,
    RequestArrived,
    RequestCancelled,
    RequestDone,
    SlotFailed,
    SlotReady,
    SlotStopped,
    SlotUsage,
    Tick,
)
from model_boss.scheduling._eviction import VictimCandidate, victims
from model_boss.scheduling._planning import LoadPlanner, ModelState
from model_boss.scheduling._pool import ModelPool, Slot, SlotState
from model_boss.scheduling._queue import CooldownGate, QueuedRequest, RequestQueue
from model_boss.scheduling._types import (
    ModelProfile,
    PoolSpec,
    RequestId,
    SchedulerConfig,
    SlotId,
)
from model_boss.scheduling._usage import UsagePolicy

__all__ = ["Scheduler"]


class Scheduler(LoadPlanner, UsagePolicy):
    """Decides what runs, what loads and what is evicted; never does any of it itself.

    Feed every event to :meth:`handle` in time order and carry out the effects it returns;
    send a :class:`Tick` at :meth:`next_wakeup` (sooner is harmless).
    """

    def __init__(
        self,
        models: Iterable[ModelProfile],
        pools: Sequence[PoolSpec],
        config: SchedulerConfig | None = None,
    ) -> None:
        self.config = config or SchedulerConfig()
        self.models: dict[str, ModelState] = {p.model_id: ModelState(p, p.vram_mb) for p in models}
        self.pool = ModelPool(pools)
        self.queue = RequestQueue(self.config.aging_s_per_level)
        self.gate = CooldownGate()
        self._inflight: dict[RequestId, tuple[Slot, QueuedRequest]] = {}
        self._pending: list[Slot] = []
        self._idle: list[tuple[float, int, int]] = []
        self._wakeups: list[tuple[float, str]] = []
        self._cold: list[tuple[float, int, str]] = []
        self._overuse: list[tuple[float, SlotId]] = []  # (grace deadline, slot) of _usage.py
        self._now = -math.inf
        self._dirty: dict[str, None] = {}
        self._loads_dirty = False
        self._blocked = False
        self._blocked_key = math.inf
        self._blocked_need = 0
        self._pending_dirty = False
        self._snap: dict[str, list[tuple[Slot, VictimCandidate, float]]] | None = None
        self._started = False
        self._growth = 1.0
        self._growth_step = 1.0 / (1.0 - 1.0 / self.config.demand_window)
        self._handlers: dict[type[Any], Callable[[Any, list[Effect]], None]] = {
            RequestArrived: self._on_arrived,
            RequestCancelled: self._on_cancelled,
            RequestDone: self._on_done,
            LeaseGranted: self._on_lease_granted,
            LeaseDenied: self._on_lease_denied,
            SlotReady: self._on_ready,
            SlotFailed: self._on_failed,
            SlotStopped: self._on_stopped,
            Tick: self._on_tick,
            AdminLoad: self._on_admin_load,
            AdminUnload: self._on_admin_unload,
            PreemptAsked: self._on_preempt,
            SlotUsage: self._on_usage,
            LeaseGrown: self._on_lease_grown,
            PoolOutside: self._on_pool_outside,
        }

    # -- public -----------------------------------------------------------------------------

    def demand_shares(self) -> dict[str, float]:
        """Each model's share of recent demand (summing to 1; empty before any arrival).

        What :meth:`prime_demand` takes back, e.g. across a restart."""
        total = sum(m.demand for m in self.models.values())
        if total <= 0:
            return {}
        return {mid: m.demand / total for mid, m in self.models.items() if m.demand > 0}

    def prime_demand(self, weights: Mapping[str, float]) -> None:
        """Start eviction's demand estimate from known popularity instead of from zero.

        ``weights`` are relative request counts per model (for instance from yesterday's
        logs); models left out start at zero. Each model gets its share of one
        ``demand_window`` of arrivals, which new arrivals then decay as usual.
        """
        unknown = sorted(set(weights) - set(self.models))
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}")
        if any(not math.isfinite(w) or w < 0 for w in weights.values()):
            raise ValueError("demand weights must be finite and >= 0")
        total = sum(weights.values())
        if total <= 0:
            return
        scale = self.config.demand_window * self._growth / total
        for model_id, m in self.models.items():
            m.demand = weights.get(model_id, 0.0) * scale

    def handle(self, event: Event) -> list[Effect]:
        """Apply one event; return the effects to carry out, in order."""
        out: list[Effect] = []
        self._now = event.now
        if not self._started:
            self._started = True
            self._start_pinned(event.now, out)
        self._handlers[type(event)](event, out)
        self._pump(event.now, out)
        return out

    def next_wakeup(self) -> float | None:
        """The earliest time at which a :class:`Tick` may change something, if any."""
        times: list[float] = []
        release = self.gate.next_release()
        if release is not None:
            times.append(release)
        idle = self._idle
        while idle:  # drop timers that a later dispatch or unload made stale
            _, sid, version = idle[0]
            slot = self.pool.slots.get(sid)
            if slot is not None and slot.idle_version == version:
                times.append(idle[0][0])
                break
            heapq.heappop(idle)
        if self._wakeups:
            times.append(self._wakeups[0][0])
        overuse = self._overuse
        while overuse:  # drop deadlines of slots that came back under their lease
            deadline, sid = overuse[0]
            slot = self.pool.slots.get(sid)
            if slot is not None and slot.overuse_deadline == deadline:
                times.append(deadline)
                break
            heapq.heappop(overuse)
        return min(times) if times else None

    @property
    def queue_length(self) -> int:
        """Requests waiting: queued plus held back by a client cooldown."""
        return len(self.queue) + len(self.gate)

    @property
    def running(self) -> int:
        return len(self._inflight)

    # -- events -----------------------------------------------------------------------------

    def _on_arrived(self, ev: RequestArrived, out: list[Effect]) -> None:
        m = self.models.get(ev.model)
        if m is None:
            out.append(Reject(ev.request_id, f"unknown model {ev.model!r}", 404))
            return
        if not m.profile.enabled and not m.slots:
            out.append(Reject(ev.request_id, f"model {ev.model!r} is disabled", 409))
            return
        if m.overuse_refused and not m.slots:
            out.append(Reject(ev.request_id, m.overuse_refused, 507))
            return
        if not self._fits(m):
            largest = self.pool.largest_capacity(m.profile.pool_kind)
            out.append(
                Reject(
                    ev.request_id,
                    f"model {ev.model!r} needs {m.vram_mb} MB; the largest pool has {largest} MB",
                    507,
                )
            )
            return
        if not m.slots and not self.pool.fits_beside_pinned(
            m.vram_mb, splittable=m.profile.splittable, kind=m.profile.pool_kind
        ):
            out.append(Reject(ev.request_id, self._pinned_reason(m), 507))
            return
        if self.queue_length >= self.config.max_queue:
            reason = f"queue full ({self.config.max_queue} requests waiting)"
            out.append(Reject(ev.request_id, reason, 429))
            return
        # Demand decays by (1 - 1/window) per arrival. Instead of decaying every model, new
        # arrivals count more and more (``_growth``); only ratios between models matter.
        self._growth *= self._growth_step
        if self._growth > 1e100:
            for other in self.models.values():
                other.demand /= self._growth
            self._growth = 1.0
        m.demand += self._growth
        req = self.queue.make(
            ev.request_id, ev.model, ev.priority, ev.client, ev.now, ev.stay_warm_s, ev.cooldown_s
        )
        if self.gate.admit(req, ev.now):
            self._enqueue(req, ev.now)

    def _on_cancelled(self, ev: RequestCancelled, out: list[Effect]) -> None:
        req = self.queue.cancel(ev.request_id)
        if req is not None:
            self.gate.left_queue(req, ev.now, dispatched=False)
            if not self.queue.count(req.model):  # a later wait for other programs starts anew
                m = self.models[req.model]
                m.outside_since = m.outside_due = math.inf
            self._loads_dirty = True
            return
        running = self._inflight.get(ev.request_id)
        if running is not None:
            out.append(AbortRequest(ev.request_id, running[0].slot_id))
            self._finish_request(ev.request_id, ev.now, out)
            return
        held = self.gate.find(ev.request_id)
        if held is not None:
            self.gate.cancel(held)

    def _on_done(self, ev: RequestDone, out: list[Effect]) -> None:
        self._finish_request(ev.request_id, ev.now, out)

    def _on_lease_granted(self, ev: LeaseGranted, out: list[Effect]) -> None:
        slot = self.pool.slots.get(ev.slot_id)
        if slot is None:
            return
        if slot.state is SlotState.DRAINING:
            out.append(ReleaseLease(slot.slot_id))
            self.pool.stopped(slot)
            self._loads_dirty = True
            self._pending_dirty = True
        elif self.pool.loading(slot):
            self.models[slot.model].denied_pools = ()
            out.append(StartSlot(slot.slot_id, slot.model, slot.pools, slot.mb_per_pool))

    def _on_lease_denied(self, ev: LeaseDenied, out: list[Effect]) -> None:
        slot = self.pool.slots.get(ev.slot_id)
        if slot is None:
            return
        pinned = slot.pinned
        self._forget_slot(slot)
        self.pool.failed(slot)
        self._pending_dirty = True
        m = self.models[slot.model]
        m.denied_pools = slot.pools
        if self._short_beside_outside(slot.pools, slot.mb_per_pool):
            # What other programs hold (PoolOutside) explains the denial: plan again now,
            # evicting idle slots of ours if that makes room, or wait for them to release.
            self._retry_denied(m, ev.now)
            return
        m.retry_at = ev.now + self.config.retry_after_s
        self._wake(m, m.retry_at, ev.now)
        if pinned:
            self._pinned_slot_lost(m, ev.now)
        self._loads_dirty = True

    def _on_ready(self, ev: SlotReady, out: list[Effect]) -> None:
        slot = self.pool.slots.get(ev.slot_id)
        if slot is None:
            return
        m = self.models[slot.model]
        if ev.footprint_mb is not None and ev.footprint_mb > m.vram_mb:
            # Measured above the estimate: the next load leases what it really took. A
            # smaller measurement does not shrink the lease: the engine's settings are
            # derived from the lease (layers offloaded, memory fractions), so a smaller
            # lease would load a smaller configuration, measure smaller, and so on.
            m.vram_mb = ev.footprint_mb
        if slot.state is SlotState.DRAINING:
            self._maybe_stop(slot, out)
        elif self.pool.ready(slot, ev.now):
            if slot.pinned:
                m.pin_failures = 0
            self._arm_idle(slot, ev.now)
            self._dirty[slot.model] = None
            if self._blocked:  # a new slot that a blocked load may drain
                self._loads_dirty = True

    def _on_failed(self, ev: SlotFailed, out: list[Effect]) -> None:
        slot = self.pool.slots.get(ev.slot_id)
        if slot is None:
            return
        for rid in [r for r, (s, _) in self._inflight.items() if s is slot]:
            del self._inflight[rid]
        if slot.lease_requested:
            out.append(ReleaseLease(slot.slot_id))
        pinned = slot.pinned
        self._forget_slot(slot)
        self.pool.failed(slot)
        self._pending_dirty = True
        m = self.models[slot.model]
        if pinned:
            self._pinned_slot_lost(m, ev.now)
        if not m.slots:
            reason = f"model {slot.model!r} failed: {ev.reason or 'backend error'}"
            for req in self.queue.drain_model(slot.model):
                self.gate.left_queue(req, ev.now, dispatched=False)
                out.append(Reject(req.request_id, reason, 503))
        self._loads_dirty = True

    def _on_stopped(self, ev: SlotStopped, out: list[Effect]) -> None:
        slot = self.pool.slots.get(ev.slot_id)
        if slot is None:
            return
        if slot.lease_requested:
            out.append(ReleaseLease(slot.slot_id))
        if slot.live:  # stopped without being drained first: placement sees new memory
            self._loads_dirty = True
        if slot.started and not slot.drain_error:  # it ran within its lease
            self.models[slot.model].overuse_strikes = 0
        self._forget_slot(slot)
        self.pool.stopped(slot)
        self._pending_dirty = True

    def _on_tick(self, ev: Tick, out: list[Effect]) -> None:
        self._loads_dirty = True

    def _on_admin_load(self, ev: AdminLoad, out: list[Effect]) -> None:
        m = self.models.get(ev.model)
        if m is None:
            out.append(LoadRefused(ev.model, f"unknown model {ev.model!r}"))
            return
        m.overuse_refused = ""  # an admin's load: give a model refused for overuse a chance
        m.overuse_strikes = 0
        want = min(ev.replicas or m.profile.replicas, m.profile.replica_max)
        self._load_replicas(m, want, ev.now, out)
        self._reject_crowded_out(ev.now, out)

    def _reject_crowded_out(self, now: float, out: list[Effect]) -> None:
        """Reject the queued requests of cold models that pinned slots now leave no room for."""
        for m in self.models.values():
            if m.slots or not self.queue.count(m.profile.model_id):
                continue
            if not self.pool.fits_beside_pinned(
                m.vram_mb, splittable=m.profile.splittable, kind=m.profile.pool_kind
            ):
                self._reject_crowded(m, now, out)

    def _reject_crowded(self, m: ModelState, now: float, out: list[Effect]) -> None:
        reason = self._pinned_reason(m)
        m.outside_since = m.outside_due = math.inf
        for req in self.queue.drain_model(m.profile.model_id):
            self.gate.left_queue(req, now, dispatched=False)
            out.append(Reject(req.request_id, reason, 507))
        self._loads_dirty = True

    def _pinned_reason(self, m: ModelState) -> str:
        room = self.pool.room_beside_pinned(m.profile.pool_kind)
        return (
            f"model {m.profile.model_id!r} needs {m.vram_mb} MB; pinned models hold "
            f"{self.pool.pinned_mb} MB, leaving at most {room} MB on one pool"
        )

    def _on_admin_unload(self, ev: AdminUnload, out: list[Effect]) -> None:
        m = self.models.get(ev.model)
        if m is None:
            return
        m.pin_want = 0
        m.repin_at = math.inf
        for slot in list(m.slots):
            self._drain(slot, out, "admin unload")
            self._loads_dirty = True  # the memory is promised back: a cold model may use it

    def _on_preempt(self, ev: PreemptAsked, out: list[Effect]) -> None:
        pool = self.pool.pools.get(ev.pool)
        if pool is None:
            return
        cands = [
            self._candidate(s, busy=False)
            for s in pool.slots.values()
            if s.state is SlotState.READY
            and not s.pinned
            and s.inflight == 0
            and s.last_priority > ev.priority
            and not self.queue.count(s.model)
        ]
        chosen = victims(ev.mb, cands)
        ids = [c.slot_id for c in cands] if chosen is None else chosen
        for sid in ids:
            reason = f"preempted by priority {ev.priority}"
            self._drain(self.pool.slots[sid], out, reason, evicted=True)

    # -- the pump: dispatch, idle unloading, loads ------------------------------------------------

    def _pump(self, now: float, out: list[Effect]) -> None:
        release = self.gate.next_release()
        if release is not None and release <= now:
            for req in self.gate.release_due(now):
                self._enqueue(req, now)
                self._reject_refused(self.models[req.model], now, out)
        if self._overuse and self._overuse[0][0] <= now:
            self._overuse_due(now, out)
        idle = self._idle
        while idle and idle[0][0] <= now:
            _, sid, version = heapq.heappop(idle)
            slot = self.pool.slots.get(sid)
            if (
                slot is not None
                and slot.idle_version == version
                and slot.state is SlotState.READY
                and slot.inflight == 0
                and not slot.pinned
                and not self.queue.count(slot.model)
            ):
                self._drain(slot, out, "idle")
                self._loads_dirty = True
        wakeups = self._wakeups
        while wakeups and wakeups[0][0] <= now:
            _, model = heapq.heappop(wakeups)
            m = self.models[model]
            if m.retry_at > now:  # an earlier wakeup fired during a lease back-off
                self._wake(m, m.retry_at, now)
            if m.pin_want:
                self._repin_due(m, now, out)
            self._mark_cold(m, now)
            self._loads_dirty = True
        if self._dirty:
            for model in self._dirty:
                self._dispatch(self.models[model], now, out)
            self._dirty.clear()
        if self._loads_dirty:
            self._loads_dirty = False
            self._plan_loads(now, out)
        if self._pending_dirty:
            self._pending_dirty = False
            self._advance_pending(out)

    def _enqueue(self, req: QueuedRequest, now: float) -> None:
        self.queue.push(req)
        self._dirty[req.model] = None
        m = self.models[req.model]
        if m.outside_since < math.inf:  # released by a cooldown, its bound may come first
            due = max(req.arrived, m.outside_since) + self.config.outside_wait_s
            if due < m.outside_due:
                m.outside_due = due
                self._wake(m, due, now)
        if self._mark_cold(m, now) and (
            # While loads are blocked, a request that sorts after the blocked head waits.
            not self._blocked or req.key <= self._blocked_key + self.config.batch_window_s
        ):
            self._loads_dirty = True

    def _dispatch(self, m: ModelState, now: float, out: list[Effect]) -> None:
        model = m.profile.model_id
        limit = m.profile.target_inflight
        queue = self.queue
        while queue.count(model):
            best: Slot | None = None
            for s in m.slots:
                if (
                    s.state is SlotState.READY
                    and s.inflight < limit
                    and (best is None or s.inflight < best.inflight)
                ):
                    best = s
            if best is None:
                if m.cold_seq == 0 and len(m.slots) < m.profile.replica_max:
                    self._mark_cold(m, now)  # scale out: every replica is full
                return
            req = queue.pop(model)
            assert req is not None
            best.inflight += 1
            best.last_used = now
            best.last_priority = req.priority
            best.stay_warm_s = (
                req.stay_warm_s if req.stay_warm_s is not None else m.profile.default_stay_warm_s
            )
            best.idle_version += 1
            self._inflight[req.request_id] = (best, req)
            self.gate.left_queue(req, now, dispatched=True)
            out.append(Dispatch(req.request_id, best.slot_id, model))

    def _finish_request(self, request_id: RequestId, now: float, out: list[Effect]) -> None:
        running = self._inflight.pop(request_id, None)
        if running is None:
            return
        slot = running[0]
        slot.inflight -= 1
        if slot.state is SlotState.DRAINING:
            self._maybe_stop(slot, out)
            return
        slot.last_used = now
        self._dirty[slot.model] = None
        if slot.inflight == 0:
            self._arm_idle(slot, now)
            if self._blocked and not self._loads_dirty and self._may_unblock(slot):
                self._loads_dirty = True

    def _arm_idle(self, slot: Slot, now: float) -> None:
        if slot.pinned:
            return
        slot.idle_version += 1
        heapq.heappush(self._idle, (now + slot.stay_warm_s, slot.slot_id, slot.idle_version))

    # -- loading and eviction ---------------------------------------------------------------------

    def _drain(self, slot: Slot, out: list[Effect], reason: str, *, evicted: bool = False) -> None:
        slot.drain_reason = reason
        slot.evicted = evicted
        self._forget_slot(slot)
        if slot.state is SlotState.PENDING and not slot.lease_requested:
            self.pool.stopped(slot)
            return
        self.pool.drain(slot)
        self._maybe_stop(slot, out)

    def _maybe_stop(self, slot: Slot, out: list[Effect]) -> None:
        if (
            slot.state is SlotState.DRAINING
            and slot.started
            and not slot.stop_sent
            and slot.inflight == 0
        ):
            slot.stop_sent = True
            out.append(
                StopSlot(
                    slot.slot_id, slot.model, slot.drain_reason, slot.evicted, slot.drain_error
                )
            )

    def _forget_slot(self, slot: Slot) -> None:
        m = self.models[slot.model]
        if slot in m.slots:
            m.slots.remove(slot)
        self._dirty[slot.model] = None
        self._mark_cold(m, self._now)
