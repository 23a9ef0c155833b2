"""The usage policy: what the scheduler does about a slot that uses more than its lease.

A mixin of :class:`~model_boss.scheduling.Scheduler`, kept apart as its own concern. The
owner's usage watch measures each ready slot's backend and sends :class:`SlotUsage`; the
decision is taken here, from the events alone (see DESIGN.md, "Usage"):

1. Over its lease on a pool by more than the tolerance: ask the ledger for the difference
   (:class:`GrowLease`, granted at once or refused, never waited for). The difference is
   counted as leased (and promised) while the ledger answers, so placement never hands it
   to another slot meanwhile.
2. Refused (by the ledger, or at once because the coordinator's own books have no room):
   if the slot is still over ``overuse_grace_s`` later, it is stopped, the requests it is
   serving fail with the reason, and its measured peak becomes the model's estimate.
3. A model stopped for overuse ``overuse_strikes`` times in a row is refused until an
   ``AdminLoad``.
"""

from __future__ import annotations

import heapq
import math

from model_boss.scheduling._effects import AbortRequest, Effect, GrowLease, Reject
from model_boss.scheduling._events import LeaseGrown, SlotUsage
from model_boss.scheduling._planning import ModelState
from model_boss.scheduling._pool import ModelPool, Slot, SlotState
from model_boss.scheduling._queue import CooldownGate, QueuedRequest, RequestQueue
from model_boss.scheduling._types import RequestId, SchedulerConfig, SlotId

__all__ = ["UsagePolicy"]


class UsagePolicy:
    """Usage state and methods; :class:`Scheduler` owns the attributes declared here."""

    config: SchedulerConfig
    models: dict[str, ModelState]
    pool: ModelPool
    queue: RequestQueue
    gate: CooldownGate
    _inflight: dict[RequestId, tuple[Slot, QueuedRequest]]
    _overuse: list[tuple[float, SlotId]]
    _loads_dirty: bool

    def _drain(self, slot: Slot, out: list[Effect], reason: str, *, evicted: bool = False) -> None:
        raise NotImplementedError

    def _finish_request(self, request_id: RequestId, now: float, out: list[Effect]) -> None:
        raise NotImplementedError

    def _pinned_slot_lost(self, m: ModelState, now: float) -> None:
        raise NotImplementedError

    # -- events -----------------------------------------------------------------------------

    def _on_usage(self, ev: SlotUsage, out: list[Effect]) -> None:
        slot = self.pool.slots.get(ev.slot_id)
        if slot is None or slot.state is not SlotState.READY:
            return
        used = {p: max(0, int(ev.used_mb.get(p, 0))) for p in slot.pools}
        slot.used_mb = used
        # As an estimate for a new slot of the model: its heaviest pool, on each of its pools.
        heaviest = max(used.values()) * len(slot.pools)
        slot.peak_mb = max(slot.peak_mb, heaviest)
        over = {p: used[p] - slot.share(p) for p in slot.pools if self._over(slot, p)}
        if not over:
            slot.refused = ""
            slot.overuse_deadline = math.inf
            return
        if slot.growing or slot.refused:
            return  # the ledger's answer is on its way, or the grace period runs
        # Only the coordinator's own promises count here: what other programs hold
        # (``outside_mb``) is the ledger's to judge, and one try there costs no wait.
        short = [
            p
            for p, mb in over.items()
            if (pool := self.pool.pools[p]).capacity_mb - pool.promised_mb < mb
        ]
        if short:
            p = short[0]
            why = (
                f"{over[p]} MB more could not be granted: the coordinator has promised the "
                f"rest of {p} to other models"
            )
            self._refuse(slot, p, why, ev.now)
            return
        for p, mb in over.items():
            self.pool.grow(slot, p, mb)  # held for it while the ledger answers
            slot.growing.add(p)
            out.append(GrowLease(slot.slot_id, slot.model, p, mb, slot.last_priority))

    def _on_lease_grown(self, ev: LeaseGrown, out: list[Effect]) -> None:
        slot = self.pool.slots.get(ev.slot_id)
        if slot is None or ev.pool not in slot.growing:
            return
        slot.growing.discard(ev.pool)
        if ev.granted:
            return
        self.pool.grow(slot, ev.pool, -ev.mb)
        if slot.state is SlotState.READY:
            why = f"the ledger refused {ev.mb} MB more" + (f" [{ev.reason}]" if ev.reason else "")
            self._refuse(slot, ev.pool, why, ev.now)

    # -- the policy -------------------------------------------------------------------------

    def _over(self, slot: Slot, pool_id: str) -> bool:
        share = slot.share(pool_id)
        cfg = self.config
        tolerance = max(cfg.overuse_tolerance * share, float(cfg.overuse_tolerance_mb))
        return slot.used_mb.get(pool_id, 0) - share > tolerance

    def _refuse(self, slot: Slot, pool_id: str, why: str, now: float) -> None:
        """No more memory for ``slot`` on ``pool_id``: it has the grace period to shrink."""
        slot.refused = (
            f"model {slot.model!r} used {slot.used_mb.get(pool_id, 0)} MB on {pool_id}, "
            f"its lease holds {slot.share(pool_id)} MB; {why}"
        )
        slot.overuse_deadline = now + self.config.overuse_grace_s
        heapq.heappush(self._overuse, (slot.overuse_deadline, slot.slot_id))

    def _overuse_due(self, now: float, out: list[Effect]) -> None:
        """Stop the slots still over their lease once their grace period is over."""
        heap = self._overuse
        while heap and heap[0][0] <= now:
            deadline, sid = heapq.heappop(heap)
            slot = self.pool.slots.get(sid)
            if (
                slot is not None
                and slot.state is SlotState.READY
                and slot.overuse_deadline == deadline
                and any(self._over(slot, p) for p in slot.pools)
            ):
                self._stop_for_overuse(slot, now, out)

    def _stop_for_overuse(self, slot: Slot, now: float, out: list[Effect]) -> None:
        m = self.models[slot.model]
        reason = slot.refused
        grace = self.config.overuse_grace_s
        reason += f", and it was still over {grace:g} s later: stopped"
        if slot.peak_mb > 0:
            m.vram_mb = slot.peak_mb  # measured: the estimate for its next load
            reason += f" (its next load leases {m.vram_mb} MB)"
        m.overuse_strikes += 1
        m.overuse_last = reason
        slot.drain_error = True
        self._drain(slot, out, reason)
        self._loads_dirty = True  # its queued requests may load it again, with more memory
        for rid in [r for r, (s, _) in self._inflight.items() if s is slot]:
            out.append(AbortRequest(rid, slot.slot_id, reason, 503))
            self._finish_request(rid, now, out)
        if m.overuse_strikes >= self.config.overuse_strikes:
            n = m.overuse_strikes
            times = "once" if n == 1 else f"{n} times in a row"
            m.overuse_refused = (
                f"model {slot.model!r} is refused: stopped {times} for using more "
                f"memory than its lease (last: {reason}); an admin load clears this"
            )
            m.pin_want = 0
            m.repin_at = math.inf
            self._reject_refused(m, now, out)
        elif slot.pinned:
            self._pinned_slot_lost(m, now)

    def _reject_refused(self, m: ModelState, now: float, out: list[Effect]) -> None:
        """Answer the queued requests of a model refused for overuse (it has no slot)."""
        if not m.overuse_refused or m.slots:
            return
        for req in self.queue.drain_model(m.profile.model_id):
            self.gate.left_queue(req, now, dispatched=False)
            out.append(Reject(req.request_id, m.overuse_refused, 507))
