"""A fake owner for the scheduler: feeds events at a manual time and records effects."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from model_boss.scheduling import (
    AcquireLease,
    Dispatch,
    Effect,
    Event,
    LeaseGranted,
    ModelProfile,
    PoolSpec,
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


def model(model_id: str, mb: int = 4000, **kw: object) -> ModelProfile:
    return ModelProfile(model_id, mb, **kw)  # type: ignore[arg-type]


class Harness:
    """Drives a Scheduler; with ``auto`` leases, starts and stops complete at once."""

    def __init__(
        self,
        models: Iterable[ModelProfile],
        pools: Sequence[tuple[str, int]] = (("gpu0", 24000),),
        config: SchedulerConfig | None = None,
        *,
        auto: bool = True,
    ) -> None:
        self.scheduler = Scheduler(models, [PoolSpec(p, mb) for p, mb in pools], config)
        self.now = 0.0
        self.auto = auto
        self.log: list[Effect] = []

    def send(self, event: Event) -> list[Effect]:
        out = self.scheduler.handle(event)
        self.log.extend(out)
        produced = list(out)
        if self.auto:
            for eff in out:
                follow: Event | None = None
                if isinstance(eff, AcquireLease):
                    follow = LeaseGranted(self.now, eff.slot_id)
                elif isinstance(eff, StartSlot):
                    follow = SlotReady(self.now, eff.slot_id)
                elif isinstance(eff, StopSlot):
                    follow = SlotStopped(self.now, eff.slot_id)
                if follow is not None:
                    produced.extend(self.send(follow))
        return produced

    def at(self, t: float) -> Harness:
        self.now = t
        return self

    def arrive(self, rid: str, model_id: str, priority: int = 10, **kw: object) -> list[Effect]:
        return self.send(RequestArrived(self.now, rid, model_id, priority, **kw))  # type: ignore[arg-type]

    def done(self, rid: str) -> list[Effect]:
        return self.send(RequestDone(self.now, rid))

    def tick(self, t: float) -> list[Effect]:
        self.now = t
        return self.send(Tick(t))


def dispatched(effects: Iterable[Effect]) -> list[str]:
    return [e.request_id for e in effects if isinstance(e, Dispatch)]


def of_type(effects: Iterable[Effect], kind: type[Effect]) -> list[Effect]:
    return [e for e in effects if isinstance(e, kind)]


@pytest.fixture
def two_models() -> Harness:
    """Models a and b (6 GB each) on one 10 GB GPU: only one fits at a time."""
    return Harness(
        [model("a", 6000, target_inflight=2), model("b", 6000, target_inflight=2)],
        pools=(("gpu0", 10000),),
    )
