"""The usage watch: what each slot's backend really uses, turned into scheduler events.

A mixin of :class:`~model_boss.engine.Engine`. Every ``usage_interval_s`` it measures
each ready slot's backend (the PSS of its process tree on the RAM pool, NVML per process
on a GPU: :func:`~model_boss.backends.measure_backend`) and posts ``SlotUsage``; it carries
out ``GrowLease`` as one try at the ledger that asks nobody to give memory back, keeps a
granted lease with the slot's (released with them), and posts ``LeaseGrown``. What to do
about an excess is the scheduler's decision (``scheduling/_usage.py``).

Beside it, every ``outside_interval_s`` and after every lease the ledger denied (or a grow
it refused), it reads what other holders hold on each pool and posts ``PoolOutside`` when
that changed, so that the scheduler places models beside them (evicting its own idle
slots when that makes room) instead of asking for memory that is not there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from model_boss.backends import BackendState, Footprint, GpuProcessProbe, measure_backend
from model_boss.engine._ledger import SlotLedger
from model_boss.leases import Lease
from model_boss.scheduling import (
    Event,
    GrowLease,
    LeaseGrown,
    PoolOutside,
    Scheduler,
    SlotState,
    SlotUsage,
)

if TYPE_CHECKING:
    from model_boss.engine._engine import _SlotRuntime

__all__ = ["OUTSIDE_STEP_MB", "EngineUsage", "pool_usage"]

log = logging.getLogger("model_boss.engine")

_MB = 1024 * 1024

#: A change in what others hold by this many MB or less is not worth an event (NVML's count
#: of a GPU's foreign memory moves a little all the time); after a denial any change is.
OUTSIDE_STEP_MB = 16


def _released(rt: _SlotRuntime) -> bool:
    return rt.released


def pool_usage(
    pools: Sequence[str], footprint: Footprint, gpu_index: Callable[[str], int | None]
) -> dict[str, int]:
    """MB used on each of ``pools``: VRAM on a GPU pool, RAM on the host RAM pool."""
    out: dict[str, int] = {}
    for pool in pools:
        index = gpu_index(pool)
        out[pool] = footprint.ram_mb if index is None else int(footprint.vram_mb.get(index, 0))
    return out


class EngineUsage:
    """Usage state and methods; :class:`Engine` owns the attributes declared here."""

    ledger: SlotLedger
    scheduler: Scheduler
    _slots: dict[int, _SlotRuntime]
    _clock: Callable[[], float]
    _usage_interval_s: float | None
    _gpu_probe: GpuProcessProbe | None
    _outside_interval_s: float | None
    _outside: dict[str, int]  # what PoolOutside last told the scheduler, per pool

    def _post(self, event: Event) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        raise NotImplementedError

    async def _watch(self, rt: _SlotRuntime, lease: Lease) -> None:
        raise NotImplementedError

    async def _watch_usage(self) -> None:
        interval = self._usage_interval_s
        assert interval is not None
        while True:
            await asyncio.sleep(interval)
            try:
                await self.measure_usage()
            except Exception:  # the watch must outlive one bad measurement
                log.exception("measuring the slots' memory failed")

    async def measure_usage(self) -> None:
        """Measure every ready slot's backend once and tell the scheduler (``SlotUsage``)."""
        for rt in list(self._slots.values()):
            slot = self.scheduler.pool.slots.get(rt.slot_id)
            backend = rt.backend
            if (
                slot is None
                or slot.state is not SlotState.READY
                or backend is None
                or backend.state is not BackendState.READY
            ):
                continue
            try:
                footprint = await measure_backend(backend, gpu=self._gpu_probe)
            except Exception as exc:
                log.warning("measuring slot %s (%s) failed: %s", rt.slot_id, rt.model, exc)
                continue
            rt.used_mb = pool_usage(rt.pools, footprint, self.ledger.gpu_index)
            rt.measured_at = self._clock()
            self._post(SlotUsage(rt.measured_at, rt.slot_id, dict(rt.used_mb)))

    async def _watch_outside(self) -> None:
        interval = self._outside_interval_s
        assert interval is not None
        while True:
            await self.refresh_outside()
            await asyncio.sleep(interval)

    async def refresh_outside(
        self, pools: Sequence[str] | None = None, *, exact: bool = False
    ) -> None:
        """Read what other holders hold on ``pools`` (default: all) from the ledger and post
        ``PoolOutside`` where it changed by more than ``OUTSIDE_STEP_MB`` (``exact``: by
        anything, as after a denial, when the scheduler must see what the ledger saw)."""
        try:
            outside = await self.ledger.outside(pools)
        except Exception as exc:  # the ledger is down: the scheduler keeps what it knew
            log.warning("reading what other holders hold failed: %s", exc)
            return
        now = self._clock()
        for pool, mb in sorted(outside.items()):
            last = self._outside.get(pool, 0)
            step = 0 if exact or mb == 0 else OUTSIDE_STEP_MB
            if abs(mb - last) > step:
                self._outside[pool] = mb
                self._post(PoolOutside(now, pool, mb))

    async def _grow(self, rt: _SlotRuntime | None, effect: GrowLease) -> None:
        """``GrowLease``: one try, no preemption; a granted lease joins the slot's."""

        def answer(granted: bool, reason: str = "") -> None:
            self._post(
                LeaseGrown(self._clock(), effect.slot_id, effect.pool, effect.mb, granted, reason)
            )

        if rt is None or rt.released:
            answer(False, "the slot is gone")
            return
        try:
            lease = await self.ledger.acquire(
                effect.pool, effect.mb, effect.priority, effect.model, 0.0, preempt=False
            )
        except Exception as exc:  # refused (no room), or the ledger is down: not granted
            log.warning(
                "slot %s (%s) is over its lease on %s: %d MB more refused: %s",
                effect.slot_id,
                effect.model,
                effect.pool,
                effect.mb,
                exc,
            )
            await self.refresh_outside((effect.pool,), exact=True)
            answer(False, str(exc))
            return
        if _released(rt):  # the slot went while the ledger answered
            await lease.release()
            answer(False, "the slot is gone")
            return
        rt.leases.append(lease)
        rt.watchers.append(asyncio.get_running_loop().create_task(self._watch(rt, lease)))
        log.info(
            "slot %s (%s) grew its lease on %s by %d MB (now %d MB)",
            effect.slot_id,
            effect.model,
            effect.pool,
            effect.mb,
            sum(x.mb for x in rt.leases if x.pool == effect.pool),
        )
        answer(True)

    def slot_memory(self, rt: _SlotRuntime | None, pools: Sequence[str]) -> dict[str, Any]:
        """Leased and used bytes of one slot, in all and per pool (used: None until
        measured)."""
        leased: Mapping[str, int] = {}
        if rt is not None:
            leased = {p: sum(x.mb for x in rt.leases if x.pool == p) for p in pools}
        used = rt.used_mb if rt is not None and rt.measured_at is not None else None
        per_pool = {
            p: {
                "leased_bytes": leased.get(p, 0) * _MB,
                "used_bytes": None if used is None else used.get(p, 0) * _MB,
            }
            for p in pools
        }
        return {
            "leased_bytes": sum(leased.values()) * _MB,
            "used_bytes": None if used is None else sum(used.values()) * _MB,
            "memory": per_pool,
        }
