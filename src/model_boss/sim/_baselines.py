"""Baseline policies, driven by the same simulator and speaking the same events and effects.

All three share one FIFO queue with head-of-line blocking on cold loads, and hand requests
for a loaded (or loading) model to that model's runner, which runs ``target_inflight`` at a
time in FIFO order. They differ in what they keep loaded:

* ``ollama-like``: one cold load at a time, 5-minute keep-alive, at most 3 models per GPU;
  when memory or the model count is short, evict the idle model whose keep-alive ends first,
  or wait until one is idle. Priorities are ignored.
* ``fifo-lru``: models stay loaded until memory is needed; evict the least recently used idle
  model; no model-count cap.
* ``fixed-ttl`` (llama-swap style): every model is unloaded 120 s after its last use; when
  memory is short, the least recently used idle model is swapped out.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from model_boss.scheduling import (
    AcquireLease,
    Dispatch,
    Effect,
    Event,
    LeaseGranted,
    PoolSpec,
    Reject,
    RequestArrived,
    RequestDone,
    SlotReady,
    SlotStopped,
    StartSlot,
    StopSlot,
)
from model_boss.sim._engine import Policy, PolicyFactory
from model_boss.sim._trace import SimModel

__all__ = ["BASELINES", "FifoBaseline", "baseline_factory"]

VictimRule = Literal["shortest_keep_alive", "lru", "none"]


@dataclass(slots=True, eq=False)
class _Runner:
    slot_id: int
    model: str
    pool: str
    mb: int
    limit: int
    state: str = "loading"  # loading, ready, stopping
    inflight: int = 0
    waiting: deque[tuple[str, int]] = field(default_factory=deque)
    last_used: float = 0.0
    version: int = 0


class FifoBaseline:
    """One FIFO queue, one cold load at a time, keep-alive and a victim rule."""

    def __init__(
        self,
        models: Sequence[SimModel],
        pools: Sequence[PoolSpec],
        *,
        keep_alive_s: float | None,
        max_models_per_pool: int | None,
        victim_rule: VictimRule,
    ) -> None:
        self.models = {m.id: m for m in models}
        self.capacity = {p.pool_id: p.capacity_mb for p in pools}
        self.used = dict.fromkeys(self.capacity, 0)
        self.count = dict.fromkeys(self.capacity, 0)
        self.keep_alive_s = keep_alive_s
        self.max_models = max_models_per_pool
        self.victim_rule = victim_rule
        self.fifo: deque[tuple[str, str, int]] = deque()
        self.runners: dict[str, _Runner] = {}
        self.by_slot: dict[int, _Runner] = {}
        self.running: dict[str, _Runner] = {}
        self.loading: _Runner | None = None
        self.expiries: list[tuple[float, int, int]] = []
        self._next_slot = 0

    def next_wakeup(self) -> float | None:
        return self.expiries[0][0] if self.expiries else None

    def handle(self, event: Event) -> list[Effect]:
        out: list[Effect] = []
        now = event.now
        if isinstance(event, RequestArrived):
            if event.model not in self.models or self._too_large(self.models[event.model]):
                out.append(Reject(event.request_id, "cannot serve this model", 507))
            else:
                self.fifo.append((event.request_id, event.model, event.priority))
        elif isinstance(event, RequestDone):
            runner = self.running.pop(event.request_id, None)
            if runner is not None:
                runner.inflight -= 1
                runner.last_used = now
                self._run(runner, now, out)
                self._arm(runner, now)
        elif isinstance(event, LeaseGranted):
            r = self.by_slot[event.slot_id]
            out.append(StartSlot(r.slot_id, r.model, (r.pool,), r.mb))
        elif isinstance(event, SlotReady):
            r = self.by_slot[event.slot_id]
            r.state = "ready"
            r.last_used = now
            if self.loading is r:
                self.loading = None
            self._run(r, now, out)
            self._arm(r, now)
        elif isinstance(event, SlotStopped):
            r = self.by_slot.pop(event.slot_id)
            self.used[r.pool] -= r.mb
            self.count[r.pool] -= 1
            if self.runners.get(r.model) is r:
                del self.runners[r.model]
        while self.expiries and self.expiries[0][0] <= now:
            _, sid, version = heapq.heappop(self.expiries)
            r2 = self.by_slot.get(sid)
            if r2 is not None and r2.version == version and self._idle(r2):
                self._stop(r2, out)
        self._pending(now, out)
        return out

    # -- internals --------------------------------------------------------------------------------

    def _too_large(self, m: SimModel) -> bool:
        return m.size_mb > max(self.capacity.values())

    def _idle(self, r: _Runner) -> bool:
        return r.state == "ready" and r.inflight == 0 and not r.waiting

    def _arm(self, r: _Runner, now: float) -> None:
        r.version += 1
        if self.keep_alive_s is not None and self._idle(r):
            heapq.heappush(self.expiries, (now + self.keep_alive_s, r.slot_id, r.version))

    def _run(self, r: _Runner, now: float, out: list[Effect]) -> None:
        while r.state == "ready" and r.waiting and r.inflight < r.limit:
            rid, _ = r.waiting.popleft()
            r.inflight += 1
            r.last_used = now
            r.version += 1
            self.running[rid] = r
            out.append(Dispatch(rid, r.slot_id, r.model))

    def _stop(self, r: _Runner, out: list[Effect]) -> None:
        r.state = "stopping"
        r.version += 1
        out.append(StopSlot(r.slot_id, r.model, "baseline unload"))

    def _pending(self, now: float, out: list[Effect]) -> None:
        while self.fifo:
            rid, model, prio = self.fifo[0]
            r = self.runners.get(model)
            if r is not None and r.state != "stopping":
                self.fifo.popleft()
                r.waiting.append((rid, prio))
                self._run(r, now, out)
                continue
            if self.loading is not None or r is not None:
                return  # one cold load at a time / wait for the old runner to stop
            m = self.models[model]
            pool = self._fit(m.size_mb)
            if pool is None:
                self._make_room(m.size_mb, out)
                return
            self._next_slot += 1
            r = _Runner(self._next_slot, model, pool, m.size_mb, m.target_inflight)
            self.runners[model] = self.by_slot[r.slot_id] = r
            self.used[pool] += m.size_mb
            self.count[pool] += 1
            self.loading = r
            out.append(AcquireLease(r.slot_id, model, (pool,), m.size_mb, prio))

    def _fit(self, mb: int) -> str | None:
        best: str | None = None
        for pool, cap in self.capacity.items():
            if cap - self.used[pool] < mb:
                continue
            if self.max_models is not None and self.count[pool] >= self.max_models:
                continue
            if best is None or self.used[pool] < self.used[best]:
                best = pool  # most free memory first, as Ollama spreads models
        return best

    def _make_room(self, mb: int, out: list[Effect]) -> None:
        if self.victim_rule == "none":
            return
        if any(r.state == "stopping" for r in self.by_slot.values()):
            return  # wait for the unload in progress
        idle = [r for r in self.by_slot.values() if self._idle(r)]
        if not idle:
            return
        # Both rules reduce to "least recently used" here because every model has the same
        # keep-alive; they are kept apart to mirror each system's own wording.
        victim = min(idle, key=lambda r: (r.last_used, r.slot_id))
        self._stop(victim, out)


#: name -> (keep_alive_s, max_models_per_pool, victim_rule)
BASELINES: dict[str, tuple[float | None, int | None, VictimRule]] = {
    "ollama-like": (300.0, 3, "shortest_keep_alive"),
    "fifo-lru": (None, None, "lru"),
    "fixed-ttl": (120.0, None, "lru"),
}


def baseline_factory(name: str) -> PolicyFactory:
    keep_alive_s, max_models, rule = BASELINES[name]

    def make(models: Sequence[SimModel], pools: Sequence[PoolSpec]) -> Policy:
        return FifoBaseline(
            models,
            pools,
            keep_alive_s=keep_alive_s,
            max_models_per_pool=max_models,
            victim_rule=rule,
        )

    return make
