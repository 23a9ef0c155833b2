"""Invariants checked after every event of simulated workloads."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import pytest

from model_boss.scheduling import (
    Dispatch,
    Effect,
    Event,
    PoolSpec,
    Scheduler,
    SchedulerConfig,
    SlotState,
    StartSlot,
)
from model_boss.sim import (
    SimModel,
    TraceSpec,
    generate_trace,
    make_models,
    scheduler_factory,
    simulate,
)


class Checked:
    """Wraps the production scheduler and checks its books after every event."""

    def __init__(self, inner: Scheduler, deadline: float = math.inf) -> None:
        self.inner = inner
        self.events = 0
        self.deadline = deadline

    def handle(self, event: Event) -> list[Effect]:
        assert event.now < self.deadline, "requests still waiting long after the last arrival"
        out = self.inner.handle(event)
        self.events += 1
        pool = self.inner.pool
        for p in pool.pools.values():
            assert p.used_mb <= p.capacity_mb, "leased more memory than the GPU has"
            assert p.promised_mb <= p.capacity_mb, "promised more memory than the GPU has"
            live = sum(s.mb_per_pool for s in p.slots.values() if s.live)
            assert live == p.promised_mb
        for eff in out:
            if isinstance(eff, Dispatch):
                slot = pool.slots[eff.slot_id]
                # READY when dispatched; a later step of the same event may have drained it,
                # in which case it stops only after this request.
                assert slot.state is SlotState.READY or (
                    slot.state is SlotState.DRAINING and not slot.stop_sent
                )
                assert slot.inflight <= self.inner.models[slot.model].profile.target_inflight
            if isinstance(eff, StartSlot):
                assert pool.slots[eff.slot_id].state is SlotState.LOADING
        return out

    def next_wakeup(self) -> float | None:
        return self.inner.next_wakeup()


@pytest.mark.parametrize(("seed", "cv", "rate"), [(1, 1.0, 0.5), (2, 4.0, 0.3), (3, 1.0, 3.0)])
def test_memory_is_never_overcommitted_and_every_request_finishes(
    seed: int, cv: float, rate: float
) -> None:
    models = make_models(12, [2000, 5000, 9000, 30000], seed=seed, replica_max=2)
    trace = generate_trace(TraceSpec(1500, rate, cv=cv, seed=seed), models, (24000, 24000))
    inner = scheduler_factory(SchedulerConfig(max_queue=100_000))

    def make(ms: Sequence[SimModel], pools: Sequence[PoolSpec]) -> Checked:
        return Checked(inner(ms, pools))  # type: ignore[arg-type]

    result = simulate(make, trace)
    assert not any(result.rejected)
    assert all(not math.isnan(lat) for lat in result.latency), "a request never finished"
    big = [m.id for m in models if m.size_mb > 24000]
    starts = set(result.load_sequence)
    assert not big or set(big) & starts, "the split model was never loaded"


@pytest.mark.parametrize(("seed", "rate"), [(4, 0.5), (5, 2.0), (6, 4.0)])
def test_split_and_pinned_models_never_overcommit_a_gpu(seed: int, rate: float) -> None:
    # A pinned model on each GPU leaves 10000 MB beside it: 12000 and 18000 MB models must
    # be split though a GPU could hold them, 30000 over all three; small ones evict them.
    models = list(make_models(12, [3000, 6000, 12000, 18000, 30000], seed=seed))
    for i in range(3):
        models[i] = dataclasses.replace(models[i], size_mb=14000, pin=True)
    trace = generate_trace(TraceSpec(1500, rate, seed=seed), models, (24000, 24000, 24000))
    inner = scheduler_factory(SchedulerConfig(max_queue=100_000))
    deadline = trace.duration_s + 3600.0

    def make(ms: Sequence[SimModel], pools: Sequence[PoolSpec]) -> Checked:
        return Checked(inner(ms, pools), deadline)  # type: ignore[arg-type]

    result = simulate(make, trace)
    assert not any(result.rejected)
    assert all(not math.isnan(lat) for lat in result.latency), "a request never finished"
