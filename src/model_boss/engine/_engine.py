"""The coordinator runtime: one asyncio task owns the scheduler; effects become I/O.

Every change of scheduler state goes through :meth:`Engine._post` into one queue, and
one task (``_run``) applies events in order and carries out the effects. Effects that
take time (leases, starting and stopping backends) run as their own tasks and report
back with events; nothing else ever touches the scheduler. See DESIGN.md beside this file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_boss.backends import Backend, BackendCrashed, GpuProcessProbe
from model_boss.engine._ledger import SlotLedger
from model_boss.engine._usage import EngineUsage
from model_boss.errors import ModelBossError
from model_boss.leases import Lease
from model_boss.scheduling import (
    AbortRequest,
    AcquireLease,
    AdminLoad,
    AdminUnload,
    Dispatch,
    Effect,
    Event,
    GrowLease,
    LeaseDenied,
    LeaseGranted,
    LoadRefused,
    ModelProfile,
    PreemptAsked,
    Reject,
    ReleaseLease,
    RequestArrived,
    RequestCancelled,
    RequestDone,
    Scheduler,
    SchedulerConfig,
    SlotFailed,
    SlotReady,
    SlotState,
    SlotStopped,
    StartSlot,
    StopSlot,
    Tick,
)

__all__ = ["BackendFactory", "Engine", "EngineModel", "RequestRejected", "Ticket"]

log = logging.getLogger("model_boss.engine")


class RequestRejected(ModelBossError):
    """The scheduler refused a request; ``status`` is the HTTP status to answer with."""

    def __init__(self, reason: str, status: int, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class EngineModel:
    """One servable model: what the scheduler needs, and what makes its backend."""

    profile: ModelProfile
    backend: str
    entry: Mapping[str, Any]
    modalities: frozenset[str] = frozenset({"text"})
    allow_remote: bool = False

    @property
    def model_id(self) -> str:
        return self.profile.model_id


BackendFactory = Callable[..., Backend]
"""``factory(kind, model_id, entry, *, gpus=..., log_dir=..., on_failure=..., budget=...)``: see
``model_boss.backends.create_backend``, which is the default."""


@dataclass(eq=False)
class Ticket:
    """One request's place in the engine, from arrival to done."""

    request_id: str
    model: str
    priority: int
    client: str
    arrived: float
    future: asyncio.Future[Backend]
    aborted: asyncio.Event = field(default_factory=asyncio.Event)
    dispatched_at: float | None = None
    loaded_at: float | None = None
    was_cold: bool = False
    done: bool = False
    slot_id: int | None = None
    error: RequestRejected | None = None  # why its slot was stopped under it, if it was

    def timings(self, now: float) -> dict[str, float]:
        """Seconds spent waiting in the queue (of which loading the model), and in all."""
        start = self.dispatched_at if self.dispatched_at is not None else now
        load = 0.0
        if self.was_cold and self.loaded_at is not None:
            load = max(0.0, min(self.loaded_at, start) - self.arrived)
        return {"queue_wait_s": start - self.arrived, "load_wait_s": load}


@dataclass(eq=False)
class _SlotRuntime:
    slot_id: int
    model: str
    pools: tuple[str, ...]
    leases: list[Lease] = field(default_factory=list)
    backend: Backend | None = None
    ready_at: float | None = None
    watchers: list[asyncio.Task[None]] = field(default_factory=list)
    used_mb: dict[str, int] = field(default_factory=dict)  # the usage watch's last look
    measured_at: float | None = None
    released: bool = False  # its leases went back: a lease granted later is not its own


class Engine(EngineUsage):
    def __init__(
        self,
        models: Sequence[EngineModel],
        ledger: SlotLedger,
        *,
        factory: BackendFactory | None = None,
        config: SchedulerConfig | None = None,
        log_dir: str | None = None,
        demand_file: str | os.PathLike[str] | None = None,
        lease_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        usage_interval_s: float | None = 2.0,
        gpu_probe: GpuProcessProbe | None = None,
        outside_interval_s: float | None = 2.0,
    ) -> None:
        """``usage_interval_s``: how often the usage watch measures each ready slot's
        backend (None or 0: never); ``gpu_probe``: its per-process GPU memory source
        (default NVML); ``outside_interval_s``: how often the ledger is read for what other
        holders hold (None or 0: only after a denied lease)."""
        if factory is None:
            from model_boss.backends import create_backend

            factory = create_backend
        self.models: dict[str, EngineModel] = {m.model_id: m for m in models}
        self.ledger = ledger
        self.config = config or SchedulerConfig()
        self.scheduler = Scheduler([m.profile for m in models], ledger.pools, self.config)
        self._factory = factory
        self._log_dir = log_dir
        self._demand_file = None if demand_file is None else Path(demand_file)
        self._lease_timeout_s = lease_timeout_s
        self._clock = clock
        self._usage_interval_s = usage_interval_s or None
        self._gpu_probe = gpu_probe
        self._usage_task: asyncio.Task[None] | None = None
        self._outside_interval_s = outside_interval_s or None
        self._outside: dict[str, int] = {}
        self._outside_task: asyncio.Task[None] | None = None
        self.stopped_for_errors: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._tickets: dict[str, Ticket] = {}
        self._slots: dict[int, _SlotRuntime] = {}
        self._overrides: dict[str, dict[str, Any]] = {}
        # per model, the overrides in force before a load changed them, until a start with
        # the new ones succeeds; a start that fails with them puts these back
        self._proven: dict[str, dict[str, Any]] = {}
        self._load_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._releasing: set[asyncio.Task[Any]] = set()  # ReleaseLease effects in flight
        self._asking: set[Lease] = set()  # leases whose preemption need is being looked up
        self._runner: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ids = itertools.count(1)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.unloads: collections.Counter[str] = collections.Counter()  # per stop_reason()
        self.load_seconds: list[float] = []

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self.ledger.connect()
        self._load_demand()
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="engine")
        if self._usage_interval_s is not None:
            self._usage_task = asyncio.get_running_loop().create_task(
                self._watch_usage(), name="engine-usage"
            )
        if self._outside_interval_s is not None:
            self._outside_task = asyncio.get_running_loop().create_task(
                self._watch_outside(), name="engine-outside"
            )
        self._post(Tick(self._clock()))

    async def stop(self) -> None:
        """Stop every backend, release every lease, fail what is still waiting."""
        for watch in (self._usage_task, self._outside_task):
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
        self._usage_task = self._outside_task = None
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:  # let them unwind (a lease request withdraws itself as it goes)
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for ticket in self._tickets.values():
            if not ticket.future.done():
                ticket.future.set_exception(RequestRejected("the coordinator is stopping", 503))
        for rt in list(self._slots.values()):
            await self._teardown(rt)
        await self.ledger.close()
        self._save_demand()

    def _load_demand(self) -> None:
        """Start eviction's popularity estimate where the last run left it (if known)."""
        path = self._demand_file
        if path is None or not path.is_file():
            return
        try:
            data = json.loads(path.read_text())
            shares = {
                str(k): float(v) for k, v in dict(data["demand"]).items() if str(k) in self.models
            }
            self.scheduler.prime_demand(shares)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the saved demand in %s: %s", path, exc)

    def _save_demand(self) -> None:
        path = self._demand_file
        shares = self.scheduler.demand_shares()
        if path is None or not shares:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps({"version": 1, "demand": shares}, sort_keys=True))
            tmp.replace(path)
        except OSError as exc:
            log.warning("could not save the demand to %s: %s", path, exc)

    def now(self) -> float:
        """The engine's clock (the one ticket times are on)."""
        return self._clock()

    # -- requests ---------------------------------------------------------------------------

    def submit(
        self,
        model: str,
        *,
        priority: int = 10,
        client: str = "anonymous",
        stay_warm_s: float | None = None,
        cooldown_s: float = 0.0,
    ) -> Ticket:
        """Queue a request; ``await ticket.future`` gives the backend to call once dispatched
        (or raises RequestRejected). Call :meth:`finish` when done, :meth:`cancel` if the
        client went away."""
        now = self._clock()
        rid = f"req-{next(self._ids)}"
        ticket = Ticket(
            rid, model, priority, client, now, asyncio.get_running_loop().create_future()
        )
        ticket.was_cold = not self._has_ready_slot(model)
        self._tickets[rid] = ticket
        self._post(RequestArrived(now, rid, model, priority, client, stay_warm_s, cooldown_s))
        return ticket

    def finish(self, ticket: Ticket, ok: bool = True) -> None:
        if not ticket.done:
            ticket.done = True
            self._tickets.pop(ticket.request_id, None)
            if ticket.dispatched_at is not None:
                self._post(RequestDone(self._clock(), ticket.request_id, ok))
                self._ask_again_if_preempted(ticket.slot_id)

    def _ask_again_if_preempted(self, slot_id: int | None) -> None:
        """A slot that was busy when its lease was asked back may be idle now: ask again,
        if someone still waits (the store keeps a lease marked until it is released)."""
        rt = self._slots.get(slot_id) if slot_id is not None else None
        if rt is None:
            return
        for lease in rt.leases:
            if lease.preempted.is_set() and not lease.lost.is_set() and lease not in self._asking:
                self._spawn(self._ask_preempt(lease))

    async def _ask_preempt(self, lease: Lease) -> None:
        """Tell the scheduler what the ledger's waiters still need on ``lease``'s pool."""
        self._asking.add(lease)
        try:
            mb = await self._preempt_need(lease)
        finally:
            self._asking.discard(lease)
        if mb > 0 and not lease.lost.is_set():
            self._post(PreemptAsked(self._clock(), lease.pool, mb, lease.preempt_priority))

    async def _preempt_need(self, lease: Lease) -> int:
        """How much the waiters that asked for ``lease`` still lack on its pool: 0 once they
        were served or left; the whole lease for a drain (or when the ledger cannot say)."""
        if lease.preempt_priority <= 0:  # a drain: every lease goes back
            return lease.mb
        try:
            status = await self.ledger.pool_status(lease.pool)
        except Exception as exc:
            log.warning("preemption on %s: ledger status failed: %s", lease.pool, exc)
            return lease.mb
        if status is None:
            return lease.mb
        mine = self.ledger.holder(lease.pool)
        asking = [
            w.mb
            for w in status.waiters
            if w.holder != mine and w.priority <= lease.preempt_priority
        ]
        if not asking:
            return 0
        return max(0, min(lease.mb, max(asking) - status.free_mb))

    def cancel(self, ticket: Ticket) -> None:
        """The client went away: leave the queue now, or abort the running request."""
        if not ticket.done:
            ticket.done = True
            self._tickets.pop(ticket.request_id, None)
            if not ticket.future.done():
                ticket.future.cancel()
            self._post(RequestCancelled(self._clock(), ticket.request_id))

    # -- admin ------------------------------------------------------------------------------

    async def load(
        self,
        model: str,
        *,
        replicas: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        wait_s: float | None = None,
    ) -> None:
        """Load ``model`` and keep it; with ``wait_s``, wait until one replica is ready."""
        if model not in self.models:
            raise RequestRejected(f"unknown model {model!r}", 404)
        if overrides:
            previous = self._overrides.get(model, {})
            self._proven.setdefault(model, previous)
            self._overrides[model] = _deep_merge(previous, overrides)
        waiter: asyncio.Future[None] | None = None
        if wait_s is not None and not self._has_ready_slot(model):
            waiter = asyncio.get_running_loop().create_future()
            self._load_waiters.setdefault(model, []).append(waiter)
        self._post(AdminLoad(self._clock(), model, replicas))
        if waiter is not None:
            try:
                await asyncio.wait_for(waiter, wait_s)
            except TimeoutError:
                raise RequestRejected(f"{model!r} was not ready within {wait_s} s", 504) from None

    def overrides(self, model: str) -> dict[str, Any]:
        """Live overrides in force for ``model`` (they last until the coordinator stops)."""
        return dict(self._overrides.get(model, {}))

    def unload(self, model: str) -> None:
        if model not in self.models:
            raise RequestRejected(f"unknown model {model!r}", 404)
        self._post(AdminUnload(self._clock(), model))

    # -- views for the status endpoints -----------------------------------------------------

    def queue_snapshot(self) -> list[dict[str, Any]]:
        now = self._clock()
        waiting = [t for t in self._tickets.values() if t.dispatched_at is None]
        key = self.scheduler.queue.key_for
        waiting.sort(key=lambda t: (key(t.priority, t.arrived), t.arrived))
        return [
            {
                "position": i + 1,
                "request_id": t.request_id,
                "model": t.model,
                "priority": t.priority,
                "client": t.client,
                "age_s": round(now - t.arrived, 3),
            }
            for i, t in enumerate(waiting)
        ]

    def running_snapshot(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [
            {
                "request_id": t.request_id,
                "model": t.model,
                "priority": t.priority,
                "client": t.client,
                "running_s": round(now - (t.dispatched_at or now), 3),
            }
            for t in self._tickets.values()
            if t.dispatched_at is not None
        ]

    def slots_snapshot(self) -> list[dict[str, Any]]:
        now = self._clock()
        out = []
        for slot in self.scheduler.pool.slots.values():
            rt = self._slots.get(slot.slot_id)
            out.append(
                {
                    "slot_id": slot.slot_id,
                    "model": slot.model,
                    "state": slot.state.value,
                    "pools": list(slot.pools),
                    "mb_per_pool": slot.mb_per_pool,
                    "pinned": slot.pinned,
                    "inflight": slot.inflight,
                    "idle_s": round(now - slot.last_used, 3) if slot.last_used else None,
                    "lease_tokens": [lease.token for lease in rt.leases] if rt else [],
                    **self.slot_memory(rt, slot.pools),
                    "stop_reason": slot.drain_reason or None,
                    "over_lease": slot.refused or None,
                    "backend": rt.backend.status() if rt and rt.backend else None,
                }
            )
        return out

    def model_state(self, model: str) -> str:
        states = [s.state for s in self.scheduler.pool.slots.values() if s.model == model]
        for state in (SlotState.READY, SlotState.LOADING, SlotState.DRAINING):
            if state in states:
                return str(state.value)
        return "failed" if SlotState.FAILED in states else "unloaded"

    def serves(self, model: str) -> bool:
        """Whether ``model`` takes requests: enabled, or disabled but loaded by an admin."""
        m = self.models.get(model)
        if m is None:
            return False
        return m.profile.enabled or any(
            s.model == model and s.live for s in self.scheduler.pool.slots.values()
        )

    def _has_ready_slot(self, model: str) -> bool:
        return any(
            s.model == model and s.state is SlotState.READY
            for s in self.scheduler.pool.slots.values()
        )

    # -- the loop ---------------------------------------------------------------------------

    def _post(self, event: Event) -> None:
        self._events.put_nowait(event)

    async def _run(self) -> None:
        while True:
            event = await self._events.get()
            try:
                effects = self.scheduler.handle(event)
            except Exception:
                log.exception("scheduler failed on %r", event)
                continue
            for effect in effects:
                try:
                    self._carry_out(effect)
                except Exception:
                    log.exception("carrying out %r failed", effect)
            if self._events.empty():
                self._arm_timer()

    def _arm_timer(self) -> None:
        wake = self.scheduler.next_wakeup()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if wake is not None:
            delay = max(0.0, wake - self._clock()) + 0.001
            self._timer = asyncio.get_running_loop().call_later(
                delay, lambda: self._post(Tick(self._clock()))
            )

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _carry_out(self, effect: Effect) -> None:
        if isinstance(effect, Dispatch):
            ticket = self._tickets.get(effect.request_id)
            rt = self._slots.get(effect.slot_id)
            if ticket is None or ticket.future.done() or rt is None or rt.backend is None:
                self._post(RequestDone(self._clock(), effect.request_id, False))
                return
            ticket.dispatched_at = self._clock()
            ticket.slot_id = effect.slot_id
            ticket.loaded_at = rt.ready_at
            ticket.future.set_result(rt.backend)
        elif isinstance(effect, Reject):
            ticket = self._tickets.pop(effect.request_id, None)
            if ticket is not None and not ticket.future.done():
                retry = effect.retry_after_s
                if retry is None and effect.code == 429:
                    retry = self.config.retry_after_s
                ticket.future.set_exception(RequestRejected(effect.reason, effect.code, retry))
        elif isinstance(effect, AbortRequest):
            ticket = self._tickets.get(effect.request_id)
            if ticket is not None:
                if effect.reason:
                    ticket.error = RequestRejected(effect.reason, effect.code)
                ticket.aborted.set()
        elif isinstance(effect, AcquireLease):
            rt = _SlotRuntime(effect.slot_id, effect.model, effect.pools)
            self._slots[effect.slot_id] = rt
            self._spawn(self._acquire(rt, effect))
        elif isinstance(effect, StartSlot):
            rt = self._slots.setdefault(
                effect.slot_id, _SlotRuntime(effect.slot_id, effect.model, effect.pools)
            )
            self._spawn(self._start(rt))
        elif isinstance(effect, StopSlot):
            rt = self._slots.get(effect.slot_id)
            if effect.evicted:
                self.counters["evictions"] += 1
            self.unloads[stop_reason(effect)] += 1
            if effect.error:
                log.warning("stopping slot %s: %s", effect.slot_id, effect.reason)
                self.stopped_for_errors.append(
                    {
                        "slot_id": effect.slot_id,
                        "model": effect.model,
                        "reason": effect.reason,
                        "at": time.time(),
                    }
                )
            self._spawn(self._stop(effect.slot_id, rt))
        elif isinstance(effect, ReleaseLease):
            rt = self._slots.get(effect.slot_id)
            if rt is not None:
                task = self._spawn(self._release(rt))
                self._releasing.add(task)
                task.add_done_callback(self._releasing.discard)
        elif isinstance(effect, GrowLease):
            self._spawn(self._grow(self._slots.get(effect.slot_id), effect))
        elif isinstance(effect, LoadRefused):
            for waiter in self._load_waiters.pop(effect.model, []):
                if not waiter.done():
                    waiter.set_exception(RequestRejected(effect.reason, 409))

    # -- effects that take time -------------------------------------------------------------

    async def _acquire(self, rt: _SlotRuntime, effect: AcquireLease) -> None:
        # The memory this slot was planned into may be a victim's, released by a task
        # spawned just before this one: let releases reach the ledger first, or it sees a
        # shortfall and asks other holders (and our own idle slots) to give memory back.
        releasing = [task for task in self._releasing if not task.done()]
        if releasing:
            await asyncio.wait(releasing)
        try:
            for pool in effect.pools:
                rt.leases.append(
                    await self.ledger.acquire(
                        pool,
                        effect.mb_per_pool,
                        effect.priority,
                        effect.model,
                        self._lease_timeout_s,
                    )
                )
        except Exception as exc:  # denied, timed out, ledger down: the scheduler retries later
            for lease in rt.leases:
                await lease.release()
            rt.leases.clear()
            self._slots.pop(rt.slot_id, None)
            if not any(other.model == rt.model for other in self._slots.values()):
                self._fail_load_waiters(rt.model, f"its memory was not granted: {exc}")
            # Tell the scheduler first what others hold: it may evict idle slots of its own.
            await self.refresh_outside(effect.pools, exact=True)
            self._post(LeaseDenied(self._clock(), rt.slot_id, str(exc)))
            return
        for lease in rt.leases:
            rt.watchers.append(asyncio.get_running_loop().create_task(self._watch(rt, lease)))
        self._post(LeaseGranted(self._clock(), rt.slot_id, rt.leases[0].token))

    async def _watch(self, rt: _SlotRuntime, lease: Lease) -> None:
        """Turn a holder's view of its lease into scheduler events, for the lease's whole
        life: a preemption request (asked again each time the slot goes idle, see
        :meth:`finish`), and a lost lease (the backend must stop: the memory may be
        someone else's already)."""
        asked = asyncio.ensure_future(lease.preempted.wait())
        lost = asyncio.ensure_future(lease.lost.wait())
        try:
            while True:
                done, _ = await asyncio.wait({asked, lost}, return_when=asyncio.FIRST_COMPLETED)
                if lost in done:
                    self.counters["leases_lost"] += 1
                    break
                await self._ask_preempt(lease)
                # Asked again, more urgently (the scheduler may have declined the first ask).
                lease.preempt_escalated.clear()
                asked = asyncio.ensure_future(lease.preempt_escalated.wait())
            self._post(SlotFailed(self._clock(), rt.slot_id, "lease lost: memory fenced"))
        finally:
            asked.cancel()
            lost.cancel()

    async def _start(self, rt: _SlotRuntime) -> None:
        model = self.models[rt.model]
        used = self._overrides.get(rt.model, {})
        entry = _deep_merge(model.entry, used)
        gpus = [g for g in (self.ledger.gpu_index(p) for p in rt.pools) if g is not None]
        started = self._clock()

        def on_failure(exc: BackendCrashed) -> None:
            self.counters["backend_crashes"] += 1
            self._post(SlotFailed(self._clock(), rt.slot_id, str(exc)))

        try:
            backend = self._factory(
                model.backend,
                rt.model,
                entry,
                gpus=gpus if self.ledger.gpu is not None else None,
                log_dir=self._log_dir,
                on_failure=on_failure,
                budget=self.ledger.budget(rt.leases),
            )
            rt.backend = backend
            await backend.start()
            footprint = await backend.footprint()
        except Exception as exc:
            self.counters["load_failures"] += 1
            log.warning("loading %s failed: %s", rt.model, exc)
            self._drop_unproven(rt.model, used)
            self._fail_load_waiters(rt.model, str(exc))
            self._post(SlotFailed(self._clock(), rt.slot_id, str(exc)))
            return
        rt.ready_at = self._clock()
        if self._overrides.get(rt.model, {}) is used:
            self._proven.pop(rt.model, None)  # the overrides it started with work
        self.counters["loads"] += 1
        self.load_seconds.append(rt.ready_at - started)
        measured = footprint.total_vram_mb if gpus else footprint.ram_mb
        for waiter in self._load_waiters.pop(rt.model, []):
            if not waiter.done():
                waiter.set_result(None)
        self._post(SlotReady(self._clock(), rt.slot_id, measured or None))

    def _drop_unproven(self, model: str, used: dict[str, Any]) -> None:
        """A start with overrides no start has succeeded with failed: put back the ones in
        force before, so that later requests and loads do not fail the same way."""
        if model not in self._proven or self._overrides.get(model, {}) is not used:
            return
        previous = self._proven.pop(model)
        log.warning("%s: dropping the live overrides %s (its start failed with them)", model, used)
        if previous:
            self._overrides[model] = previous
        else:
            self._overrides.pop(model, None)

    def _fail_load_waiters(self, model: str, reason: str) -> None:
        for waiter in self._load_waiters.pop(model, []):
            if not waiter.done():
                waiter.set_exception(RequestRejected(f"loading {model!r} failed: {reason}", 503))

    async def _stop(self, slot_id: int, rt: _SlotRuntime | None) -> None:
        if rt is not None and rt.backend is not None:
            try:
                await rt.backend.stop()
            except Exception:
                log.exception("stopping slot %s failed", slot_id)
        self._post(SlotStopped(self._clock(), slot_id))

    async def _release(self, rt: _SlotRuntime) -> None:
        rt.released = True
        for task in rt.watchers:
            task.cancel()
        if rt.backend is not None and rt.backend.state.value != "stopped":
            # A slot that failed without its process dying (its lease was lost): the
            # memory goes back only once the process is gone. A crashed backend is
            # stopped too, so that its HTTP session is closed.
            try:
                await rt.backend.stop()
            except Exception:
                log.exception("stopping slot %s before releasing its lease failed", rt.slot_id)
        for lease in rt.leases:
            await lease.release()
        rt.leases.clear()
        if rt.backend is None or rt.backend.state.value in ("stopped", "failed"):
            self._slots.pop(rt.slot_id, None)

    async def _teardown(self, rt: _SlotRuntime) -> None:
        if rt.backend is not None:
            with contextlib.suppress(Exception):
                await rt.backend.stop()
        await self._release(rt)
        self._slots.pop(rt.slot_id, None)


#: What ``Engine.counters`` counts: models loaded, loads that failed, slots evicted to make
#: room (for a model or a more urgent lease holder), leases lost, backends that crashed.
COUNTERS = ("loads", "load_failures", "evictions", "leases_lost", "backend_crashes")


def stop_reason(effect: StopSlot) -> str:
    """Why a slot is stopped, as one word: ``preemption`` (a more urgent lease holder asked
    for the memory), ``room`` (another model needs it), ``overuse`` (it used more than its
    lease), ``idle``, ``admin`` (an unload), else ``other``."""
    if effect.evicted:
        return "preemption" if effect.reason.startswith("preempted") else "room"
    if effect.error:
        return "overuse"
    return {"idle": "idle", "admin unload": "admin"}.get(effect.reason, "other")


def _deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
