"""Memory held outside the scheduler (``PoolOutside``): other programs' leases on the ledger.

The numbers are those of the H200 run that found the bug: a construction-kit program held
140,771 MB of 143,771 MB; the coordinator's idle smol-2k (740 MB) and smol-8k (892 MB) held
most of the rest, so smol-32k (1,444 MB) fit only once one of them went.
"""

from __future__ import annotations

from collections.abc import Iterable

from model_boss.scheduling import (
    AcquireLease,
    AdminLoad,
    Effect,
    GrowLease,
    LeaseDenied,
    LeaseGranted,
    LoadRefused,
    PoolOutside,
    Reject,
    SchedulerConfig,
    SlotReady,
    SlotState,
    SlotStopped,
    SlotUsage,
    StartSlot,
    StopSlot,
    Tick,
)
from tests.scheduling.conftest import Harness, dispatched, model, of_type

GPU_MB = 143_771
KIT_MB = 140_771  # the other program's lease


def gpu(*extra: object, config: SchedulerConfig | None = None) -> Harness:
    models = [model("smol-2k", 740), model("smol-8k", 892), model("smol-32k", 1444), *extra]
    return Harness(models, pools=(("gpu0", GPU_MB),), config=config, auto=False)  # type: ignore[arg-type]


def leases(effects: Iterable[Effect]) -> list[AcquireLease]:
    return [e for e in effects if isinstance(e, AcquireLease)]


def stops(effects: Iterable[Effect]) -> list[StopSlot]:
    return [e for e in effects if isinstance(e, StopSlot)]


def complete(h: Harness, effects: list[Effect]) -> list[Effect]:
    """Grant every lease, start every slot and stop every slot asked for, as an owner would;
    returns everything that followed."""
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


def two_idle(h: Harness) -> None:
    for i, name in enumerate(["smol-2k", "smol-8k"]):
        h.at(float(i))
        assert dispatched(complete(h, h.arrive(f"warm-{name}", name))) == [f"warm-{name}"]
        h.done(f"warm-{name}")
    assert sorted(s.model for s in h.scheduler.pool if s.state is SlotState.READY) == [
        "smol-2k",
        "smol-8k",
    ]


def test_pool_books_leave_memory_held_outside_alone() -> None:
    h = gpu()
    two_idle(h)
    pool = h.scheduler.pool.pools["gpu0"]
    assert pool.free_mb == GPU_MB - 1632
    h.send(PoolOutside(3.0, "gpu0", KIT_MB))
    assert pool.outside_mb == KIT_MB
    assert pool.free_mb == GPU_MB - 1632 - KIT_MB == 1368
    assert pool.room_mb == GPU_MB - KIT_MB
    h.send(PoolOutside(4.0, "gpu0", -5))  # never negative
    assert pool.outside_mb == 0
    assert pool.free_mb == GPU_MB - 1632


def test_a_lease_denied_for_another_holder_evicts_an_idle_slot_and_loads() -> None:
    # Today's bug: the books said ~142 GB free, the ledger said no, and the request was
    # asked again every retry_after_s forever while two idle slots held the room it needed.
    h = gpu(config=SchedulerConfig(retry_after_s=5.0))
    two_idle(h)
    h.at(10.0)
    (first,) = leases(h.arrive("r1", "smol-32k"))  # the books know nothing of the kit yet
    h.send(PoolOutside(10.0, "gpu0", KIT_MB))  # the engine reads the ledger on a denial
    out = h.send(LeaseDenied(10.0, first.slot_id, "no pool granted 1444 MiB"))
    (stop,) = stops(out)  # one idle slot goes at once, not in retry_after_s
    assert stop.evicted
    assert leases(out) == []  # its lease is asked for only once its memory is back
    out = complete(h, out)
    (second,) = leases(out)
    assert second.model == "smol-32k"
    assert dispatched(out) == ["r1"]
    pool = h.scheduler.pool.pools["gpu0"]
    assert pool.promised_mb + pool.outside_mb <= GPU_MB
    assert pool.used_mb + pool.outside_mb <= GPU_MB


def test_outside_memory_learned_after_the_denial_also_ends_the_back_off() -> None:
    h = gpu(config=SchedulerConfig(retry_after_s=5.0))
    two_idle(h)
    h.at(10.0)
    (first,) = leases(h.arrive("r1", "smol-32k"))
    out = h.send(LeaseDenied(10.0, first.slot_id, "denied"))
    assert stops(out) == []
    assert leases(out) == []
    h.at(11.0)
    out = complete(h, h.send(PoolOutside(11.0, "gpu0", KIT_MB)))
    assert len(stops(out)) == 1
    assert dispatched(out) == ["r1"]


def test_known_outside_memory_makes_placement_evict_before_asking_the_ledger() -> None:
    h = gpu()
    two_idle(h)
    h.send(PoolOutside(5.0, "gpu0", KIT_MB))
    out = h.at(10.0).arrive("r1", "smol-32k")
    (stop,) = stops(out)
    assert leases(out) == []  # the victim's memory is still leased
    out = h.send(SlotStopped(10.0, stop.slot_id))
    (lease,) = leases(out)
    assert lease.model == "smol-32k"
    assert dispatched(complete(h, out)) == ["r1"]


def test_a_slot_placed_before_others_took_more_is_placed_again_with_more_victims() -> None:
    h = gpu()
    two_idle(h)
    h.send(PoolOutside(5.0, "gpu0", KIT_MB))
    (stop,) = stops(h.at(10.0).arrive("r1", "smol-32k"))  # one victim; r1 waits for it
    # Before the victim has stopped, the kit takes 1,000 MB more: the slot placed for r1
    # would never get its lease; it is placed again, and the other idle slot goes too.
    out = h.send(PoolOutside(10.5, "gpu0", KIT_MB + 1000))
    (second,) = stops(out)
    assert second.slot_id != stop.slot_id
    out = h.send(SlotStopped(11.0, stop.slot_id))
    assert leases(out) == []
    out = h.send(SlotStopped(11.0, second.slot_id))
    (lease,) = leases(out)
    assert lease.model == "smol-32k"
    assert dispatched(complete(h, out)) == ["r1"]


def test_an_idle_slot_is_not_evicted_when_the_room_beside_others_is_enough() -> None:
    h = gpu()
    two_idle(h)
    h.send(PoolOutside(5.0, "gpu0", KIT_MB - 1000))  # 2368 MB free beside everything
    out = h.at(10.0).arrive("r1", "smol-32k")
    assert stops(out) == []
    assert len(leases(out)) == 1


def test_a_model_that_fits_only_once_the_other_holder_leaves_waits_instead_of_507() -> None:
    # 3,500 MB: more than the room beside the kit (3,000 MB) even with every idle slot gone,
    # but far less than the GPU. Another program's lease is temporary: queue it, as a busy
    # pool is queued (for up to outside_wait_s, 30 s: see test_outside_wait.py).
    h = gpu(model("mid", 3500))
    two_idle(h)
    h.send(PoolOutside(5.0, "gpu0", KIT_MB))
    out = h.at(10.0).arrive("r1", "mid")
    assert of_type(out, Reject) == []
    assert leases(out) == []
    assert stops(out) == []
    for t in (12.0, 20.0, 39.0):
        out = h.tick(t)
        assert of_type(out, Reject) == []
        assert leases(out) == []
    assert h.scheduler.queue_length == 1
    out = complete(h, h.send(PoolOutside(39.5, "gpu0", 0)))  # the kit released its lease
    assert stops(out) == []  # room for everyone now
    assert dispatched(out) == ["r1"]


def test_a_model_too_large_for_the_gpu_is_still_refused_with_507() -> None:
    h = gpu(model("huge", GPU_MB + 1))
    h.send(PoolOutside(0.0, "gpu0", KIT_MB))
    (reject,) = of_type(h.arrive("r1", "huge"), Reject)
    assert isinstance(reject, Reject)
    assert reject.code == 507


def test_pinned_room_is_judged_on_the_full_capacity_not_on_what_others_hold_now() -> None:
    h = Harness(
        [model("p", 6000, pin=True), model("fits", 3000), model("never", 5000)],
        pools=(("gpu0", 10_000),),
    )
    h.send(Tick(0.0))  # p is pinned and loads
    h.send(PoolOutside(0.0, "gpu0", 3000))  # 1,000 MB left beside p and the other program
    assert of_type(h.arrive("r1", "fits"), Reject) == []  # fits beside p once it is gone
    (reject,) = of_type(h.arrive("r2", "never"), Reject)  # never fits beside p
    assert isinstance(reject, Reject)
    assert reject.code == 507
    assert "pinned models hold 6000 MB" in reject.reason
    out = h.send(PoolOutside(1.0, "gpu0", 0))
    assert dispatched(out) == ["r1"]


def test_an_admin_load_evicts_idle_slots_to_fit_beside_another_holder() -> None:
    h = gpu()
    two_idle(h)
    h.send(PoolOutside(5.0, "gpu0", KIT_MB))
    out = complete(h, h.send(AdminLoad(10.0, "smol-32k")))
    assert len(stops(out)) == 1
    assert [e.model for e in leases(out)] == ["smol-32k"]
    assert [(s.model, s.pinned) for s in h.scheduler.pool if s.model == "smol-32k"] == [
        ("smol-32k", True)
    ]


def test_an_admin_load_with_no_room_beside_others_says_who_holds_it() -> None:
    h = gpu(model("mid", 3500))
    h.send(PoolOutside(0.0, "gpu0", KIT_MB))
    (refused,) = of_type(h.send(AdminLoad(1.0, "mid")), LoadRefused)
    assert isinstance(refused, LoadRefused)
    assert f"other programs hold gpu0={KIT_MB} MB" in refused.reason


def test_a_pinned_model_denied_for_another_holder_evicts_and_loads_at_once() -> None:
    h = gpu(config=SchedulerConfig(retry_after_s=5.0))
    two_idle(h)
    h.at(10.0)
    (first,) = leases(h.send(AdminLoad(10.0, "smol-32k")))
    h.send(PoolOutside(10.0, "gpu0", KIT_MB))
    out = complete(h, h.send(LeaseDenied(10.0, first.slot_id, "denied")))
    assert len(stops(out)) == 1
    assert [e.model for e in leases(out)] == ["smol-32k"]
    assert [s.state for s in h.scheduler.pool if s.model == "smol-32k"] == [SlotState.READY]


def test_a_denial_the_books_cannot_explain_still_backs_off() -> None:
    h = gpu(config=SchedulerConfig(retry_after_s=5.0))
    two_idle(h)
    h.send(PoolOutside(5.0, "gpu0", 1000))  # plenty of room left: not why it was denied
    (first,) = leases(h.at(10.0).arrive("r1", "smol-32k"))
    out = h.send(LeaseDenied(10.0, first.slot_id, "waiters ahead"))
    assert stops(out) == []
    assert leases(out) == []
    assert leases(h.tick(14.9)) == []
    assert len(leases(h.tick(15.0))) == 1


def test_an_unchanged_report_changes_nothing() -> None:
    h = gpu()
    two_idle(h)
    h.send(PoolOutside(5.0, "gpu0", KIT_MB))
    assert h.send(PoolOutside(6.0, "gpu0", KIT_MB)) == []
    assert h.send(PoolOutside(6.0, "nope", KIT_MB)) == []  # a pool it does not know


def test_a_slot_over_its_lease_beside_another_holder_asks_the_ledger_for_more() -> None:
    # What others hold is the ledger's to judge (a one-shot try, no wait): the slot asks.
    h = gpu(config=SchedulerConfig(overuse_grace_s=10.0))
    two_idle(h)
    h.send(PoolOutside(5.0, "gpu0", KIT_MB))
    (slot,) = [s for s in h.scheduler.pool if s.model == "smol-2k"]
    (grow,) = of_type(h.send(SlotUsage(6.0, slot.slot_id, {"gpu0": 2740})), GrowLease)
    assert isinstance(grow, GrowLease)
    assert grow.mb == 2000
