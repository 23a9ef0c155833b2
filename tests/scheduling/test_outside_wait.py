"""The bound on a wait for memory that other programs hold (``outside_wait_s``).

The numbers are those of benchmarks/gpu_check.py on the RAM pool: a construction-kit program
held all of the pool's 24,105 MB but 3,000; the coordinator's admin-loaded (pinned) smol-2k
(746 MB) and smol-8k (881 MB) held most of the rest, so a request for smol-32k (1,421 MB)
could be placed neither now nor by evicting anything, and waited for the client's timeout.
"""

from __future__ import annotations

import pytest

from model_boss.scheduling import (
    AcquireLease,
    AdminLoad,
    AdminUnload,
    Effect,
    LeaseDenied,
    LeaseGranted,
    LoadRefused,
    PoolOutside,
    Reject,
    RequestCancelled,
    SchedulerConfig,
    SlotReady,
    SlotState,
    SlotStopped,
    StartSlot,
    StopSlot,
)
from tests.scheduling.conftest import Harness, dispatched, model, of_type

POOL = "vm:ram"
POOL_MB = 24_105
KIT_MB = POOL_MB - 3000  # the other program's lease
REASON = (
    "model 'smol-32k' needs 1421 MB on vm:ram; the coordinator's pinned models hold 1627 MB "
    "and other programs 21105 MB of 24105 MB: try again later"
)


def ram(config: SchedulerConfig | None = None) -> Harness:
    models = [
        model("smol-2k", 746),
        model("smol-8k", 881),
        model("smol-32k", 1421),
        model("other", 1500),
    ]
    return Harness(models, pools=((POOL, POOL_MB),), config=config, auto=False)


def complete(h: Harness, effects: list[Effect]) -> list[Effect]:
    """Grant every lease, start every slot and stop every slot asked for, as an owner would."""
    seen: list[Effect] = []
    todo = list(effects)
    while todo:
        eff = todo.pop(0)
        seen.append(eff)
        if isinstance(eff, AcquireLease):
            todo.extend(h.send(LeaseGranted(h.now, eff.slot_id)))
        elif isinstance(eff, StartSlot):
            todo.extend(h.send(SlotReady(h.now, eff.slot_id)))
        elif isinstance(eff, StopSlot):
            todo.extend(h.send(SlotStopped(h.now, eff.slot_id)))
    return seen


def rejects(effects: list[Effect]) -> list[Reject]:
    return [e for e in effects if isinstance(e, Reject)]


def pinned_two(h: Harness) -> None:
    """smol-2k and smol-8k admin-loaded (pinned), then the kit takes all but 3,000 MB."""
    for name in ("smol-2k", "smol-8k"):
        assert of_type(complete(h, h.send(AdminLoad(h.now, name))), LoadRefused) == []
    assert [(s.model, s.pinned, s.state) for s in h.scheduler.pool] == [
        ("smol-2k", True, SlotState.READY),
        ("smol-8k", True, SlotState.READY),
    ]
    h.send(PoolOutside(h.now, POOL, KIT_MB))


def test_a_request_blocked_only_by_other_programs_is_answered_503_after_the_bound() -> None:
    h = ram(SchedulerConfig(retry_after_s=7.0))
    pinned_two(h)
    out = h.at(10.0).arrive("r1", "smol-32k")
    assert out == []  # queued: other programs' memory is temporary
    assert h.scheduler.next_wakeup() == 40.0  # the scheduler's own timer, no clock read
    for t in (12.0, 25.0, 39.9):
        assert h.tick(t) == []
    assert h.scheduler.queue_length == 1
    (reject,) = rejects(h.tick(40.0))
    assert reject.request_id == "r1"
    assert reject.code == 503
    assert reject.reason == REASON
    assert reject.retry_after_s == 7.0
    assert h.scheduler.queue_length == 0
    assert [s.model for s in h.scheduler.pool] == ["smol-2k", "smol-8k"]  # nothing evicted


def test_each_request_waits_its_own_bound() -> None:
    h = ram(SchedulerConfig(outside_wait_s=20.0))
    pinned_two(h)
    h.at(10.0).arrive("r1", "smol-32k")
    h.at(15.0).arrive("r2", "smol-32k", priority=1)  # sorts first, arrived later
    assert [r.request_id for r in rejects(h.tick(30.0))] == ["r1"]
    wakeup = h.scheduler.next_wakeup()
    assert wakeup is not None
    assert wakeup <= 35.0
    assert h.tick(34.9) == []
    assert [r.request_id for r in rejects(h.tick(35.0))] == ["r2"]


def test_a_model_queued_behind_a_blocked_one_has_its_bound_counted_meanwhile() -> None:
    h = ram()
    pinned_two(h)
    h.at(10.0).arrive("r1", "smol-32k")
    h.at(11.0).arrive("r2", "other")
    assert [r.request_id for r in rejects(h.tick(40.0))] == ["r1"]
    assert [r.request_id for r in rejects(h.tick(41.0))] == ["r2"]


def test_the_bound_counts_from_when_other_programs_blocked_it() -> None:
    # Placed while there was room, then denied its lease: the kit took the pool meanwhile.
    # The bound counts from then (20 s), not from the arrival (1 s).
    h = ram()
    pinned_two(h)
    h.send(PoolOutside(0.0, POOL, 0))
    out = h.at(1.0).arrive("r1", "smol-32k")
    (lease,) = [e for e in out if isinstance(e, AcquireLease)]
    h.send(PoolOutside(20.0, POOL, KIT_MB))
    h.at(20.0).send(LeaseDenied(20.0, lease.slot_id, "no room"))
    assert h.tick(49.9) == []
    (reject,) = rejects(h.tick(50.0))
    assert reject.request_id == "r1"


def test_served_when_the_other_program_gives_memory_back_before_the_bound() -> None:
    h = ram()
    pinned_two(h)
    h.at(10.0).arrive("r1", "smol-32k")
    h.tick(25.0)
    out = complete(h, h.at(30.0).send(PoolOutside(30.0, POOL, KIT_MB - 1000)))
    assert rejects(out) == []
    assert dispatched(out) == ["r1"]
    assert [e for e in out if isinstance(e, StopSlot)] == []  # the pinned models stay
    assert rejects(h.tick(40.0)) == []
    assert rejects(h.tick(100.0)) == []


def test_served_when_a_pinned_model_is_unloaded_before_the_bound() -> None:
    h = ram()
    pinned_two(h)
    h.at(10.0).arrive("r1", "smol-32k")
    out = complete(h, h.at(20.0).send(AdminUnload(20.0, "smol-8k")))
    assert [e.model for e in out if isinstance(e, StopSlot)] == ["smol-8k"]
    assert [e.model for e in out if isinstance(e, AcquireLease)] == ["smol-32k"]
    assert dispatched(out) == ["r1"]
    assert rejects(h.tick(40.0)) == []


def test_a_model_that_fits_after_evicting_idle_slots_evicts_instead() -> None:
    # The same memory, but smol-8k was warmed by a request (not pinned) and is idle.
    h = ram()
    assert of_type(complete(h, h.send(AdminLoad(0.0, "smol-2k"))), LoadRefused) == []
    assert dispatched(complete(h, h.at(1.0).arrive("warm", "smol-8k"))) == ["warm"]
    h.done("warm")
    h.send(PoolOutside(2.0, POOL, KIT_MB))
    out = complete(h, h.at(10.0).arrive("r1", "smol-32k"))
    assert [e.model for e in out if isinstance(e, StopSlot)] == ["smol-8k"]
    assert dispatched(out) == ["r1"]
    assert rejects(h.tick(40.0)) == []


def test_a_model_waiting_for_a_busy_slot_is_not_bounded() -> None:
    # smol-8k is busy (not pinned): draining it would make room, so the request waits for
    # the busy-eviction rule, not for other programs.
    h = ram()
    assert of_type(complete(h, h.send(AdminLoad(0.0, "smol-2k"))), LoadRefused) == []
    assert dispatched(complete(h, h.at(1.0).arrive("busy", "smol-8k"))) == ["busy"]
    h.send(PoolOutside(2.0, POOL, KIT_MB))
    h.at(10.0).arrive("r1", "smol-32k", priority=1)
    assert rejects(h.tick(11.0)) == []
    out = h.tick(12.0)  # key + busy_evict_after_s: smol-8k is drained
    assert rejects(out) == []
    assert h.scheduler.pool.slots[2].state is SlotState.DRAINING
    out = complete(h, h.at(50.0).done("busy"))
    assert dispatched(out) == ["r1"]


def test_an_admin_load_blocked_by_other_programs_is_refused_at_once() -> None:
    h = ram()
    pinned_two(h)
    (refused,) = of_type(h.send(AdminLoad(10.0, "smol-32k")), LoadRefused)
    assert isinstance(refused, LoadRefused)
    assert f"other programs hold {POOL}={KIT_MB} MB" in refused.reason


def test_a_cancelled_wait_starts_the_next_bound_anew() -> None:
    h = ram()
    pinned_two(h)
    h.at(10.0).arrive("r1", "smol-32k")
    h.tick(20.0)
    h.send(RequestCancelled(25.0, "r1"))
    h.at(60.0).arrive("r2", "smol-32k")
    assert rejects(h.tick(89.9)) == []
    assert [r.request_id for r in rejects(h.tick(90.0))] == ["r2"]


@pytest.mark.parametrize("wait", [0.0, 5.0])
def test_the_bound_is_configurable(wait: float) -> None:
    h = ram(SchedulerConfig(outside_wait_s=wait))
    pinned_two(h)
    out = h.at(10.0).arrive("r1", "smol-32k")
    if wait == 0.0:
        assert [r.request_id for r in rejects(out)] == ["r1"]
    else:
        assert rejects(out) == []
        assert [r.request_id for r in rejects(h.tick(15.0))] == ["r1"]
