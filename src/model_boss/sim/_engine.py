"""The discrete-event simulator: a virtual clock, simulated backends, and one policy.

The policy is anything with ``handle(event) -> list[Effect]`` and ``next_wakeup()``: the
production :class:`~model_boss.scheduling.Scheduler` or a baseline. Simulated backends:

* a load takes the model's ``load_s`` (start-up + size / bandwidth for generated models);
  loads run in parallel when a policy starts several;
* a request takes ``prompt_tokens / prefill_tps + output_tokens / decode_tps`` seconds,
  independent of how many others run on the same slot (up to its ``target_inflight``);
* a stop takes ``stop_s``; leases are granted at once.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from model_boss.scheduling import (
    AcquireLease,
    Dispatch,
    Effect,
    Event,
    LeaseGranted,
    ModelProfile,
    PoolSpec,
    Reject,
    RequestArrived,
    RequestDone,
    Scheduler,
    SchedulerConfig,
    SlotReady,
    SlotStopped,
    StartSlot,
    StopSlot,
    Tick,
)
from model_boss.sim._trace import SimModel, Trace, TraceRequest

__all__ = [
    "Policy",
    "PolicyFactory",
    "ServiceModel",
    "SimResult",
    "pool_specs",
    "scheduler_factory",
    "simulate",
]


class Policy(Protocol):
    def handle(self, event: Event) -> list[Effect]: ...

    def next_wakeup(self) -> float | None: ...


PolicyFactory = Callable[[Sequence[SimModel], Sequence[PoolSpec]], Policy]


@dataclass(frozen=True, slots=True)
class ServiceModel:
    prefill_tps: float = 2000.0
    decode_tps: float = 50.0
    stop_s: float = 0.5

    def service_s(self, req: TraceRequest) -> float:
        return req.prompt_tokens / self.prefill_tps + req.output_tokens / self.decode_tps


@dataclass(slots=True)
class SimResult:
    """Per-request outcomes (index = position in the trace) and load counters."""

    latency: list[float]
    warm: list[float]
    rejected: list[bool]
    loads: int = 0
    mb_loaded: int = 0
    events: int = 0
    load_sequence: list[str] = field(default_factory=list)


def pool_specs(gpus_mb: Sequence[int]) -> list[PoolSpec]:
    return [PoolSpec(f"gpu{i}", mb) for i, mb in enumerate(gpus_mb)]


def scheduler_factory(
    config: SchedulerConfig | None = None, *, stay_warm_s: float | None = None
) -> PolicyFactory:
    """A factory for the production scheduler over simulated models.

    ``stay_warm_s`` sets every model's idle unloading time (default: the category's, 300 s
    for the generated LLMs; ``math.inf`` never unloads an idle model).
    """

    def make(models: Sequence[SimModel], pools: Sequence[PoolSpec]) -> Policy:
        profiles = [
            ModelProfile(
                m.id,
                m.size_mb,
                pin=m.pin,
                target_inflight=m.target_inflight,
                replica_max=m.replica_max,
                splittable=True,
                load_s=m.load_s,
                stay_warm_s=stay_warm_s,
            )
            for m in models
        ]
        return Scheduler(profiles, pools, config)

    return make


def simulate(
    factory: PolicyFactory, trace: Trace, service: ServiceModel | None = None
) -> SimResult:
    """Replay ``trace`` against a fresh policy; deterministic for a given trace."""
    service = service or ServiceModel()
    pools = pool_specs(trace.gpus_mb)
    policy = factory(trace.models, pools)
    sizes = {m.id: m for m in trace.models}
    reqs = trace.requests
    n = len(reqs)
    latency = [float("nan")] * n
    warm = [service.service_s(r) for r in reqs]
    rejected = [False] * n
    result = SimResult(latency, warm, rejected)
    heap: list[tuple[float, int, Event]] = []
    seq = 0
    next_tick = float("inf")
    i = 0
    handle = policy.handle
    push = heapq.heappush
    pop = heapq.heappop
    while True:
        if i < n and (not heap or reqs[i].t <= heap[0][0]):
            r = reqs[i]
            event: Event = RequestArrived(r.t, str(i), r.model, r.priority, r.client)
            now = r.t
            i += 1
        elif heap:
            now, _, event = pop(heap)
            if type(event) is Tick:
                if now != next_tick:
                    continue
                next_tick = float("inf")
        else:
            break
        result.events += 1
        for eff in handle(event):
            seq += 1
            if type(eff) is Dispatch:
                idx = int(eff.request_id)
                done_at = now + warm[idx]
                push(heap, (done_at, seq, RequestDone(done_at, eff.request_id)))
            elif type(eff) is AcquireLease:
                push(heap, (now, seq, LeaseGranted(now, eff.slot_id)))
            elif type(eff) is StartSlot:
                ready_at = now + sizes[eff.model].load_s
                result.loads += 1
                result.mb_loaded += eff.mb_per_pool * len(eff.pools)
                result.load_sequence.append(eff.model)
                push(heap, (ready_at, seq, SlotReady(ready_at, eff.slot_id)))
            elif type(eff) is StopSlot:
                done_at = now + service.stop_s
                push(heap, (done_at, seq, SlotStopped(done_at, eff.slot_id)))
            elif type(eff) is Reject:
                rejected[int(eff.request_id)] = True
        if type(event) is RequestDone:
            idx = int(event.request_id)
            latency[idx] = now - reqs[idx].t
        wake = policy.next_wakeup()
        if wake is not None and now < wake < next_tick:
            next_tick = wake
            seq += 1
            push(heap, (next_tick, seq, Tick(next_tick)))
    return result
