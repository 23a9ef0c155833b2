"""The usage policy: a slot over its lease asks for more, and is stopped if refused."""

from __future__ import annotations

from model_boss.scheduling import (
    AbortRequest,
    AcquireLease,
    AdminLoad,
    GrowLease,
    LeaseGrown,
    Reject,
    SchedulerConfig,
    SlotState,
    SlotUsage,
    StopSlot,
    Tick,
)
from tests.scheduling.conftest import Harness, dispatched, model, of_type

CONFIG = SchedulerConfig(overuse_grace_s=10.0)


def ram_harness(*models: tuple[str, int], capacity: int = 2000, **kw: object) -> Harness:
    return Harness(
        [model(mid, mb, **kw) for mid, mb in models], pools=(("ram", capacity),), config=CONFIG
    )


def slot_of(h: Harness, model_id: str) -> int:
    (slot,) = [s for s in h.scheduler.pool if s.model == model_id and s.live]
    return slot.slot_id


def grows(effects: object) -> list[GrowLease]:
    return [e for e in of_type(effects, GrowLease) if isinstance(e, GrowLease)]  # type: ignore[arg-type]


def stops(effects: object) -> list[StopSlot]:
    return [e for e in of_type(effects, StopSlot) if isinstance(e, StopSlot)]  # type: ignore[arg-type]


def test_usage_within_the_tolerance_asks_for_nothing() -> None:
    h = ram_harness(("a", 500))
    h.arrive("a1", "a")
    sid = slot_of(h, "a")
    # 5% of 500 is 25, less than 64 MB: up to 564 MB is within the lease.
    assert h.send(SlotUsage(1.0, sid, {"ram": 564})) == []
    assert h.send(SlotUsage(60.0, sid, {"ram": 564})) == []


def test_a_slot_over_its_lease_asks_the_ledger_for_the_difference_once() -> None:
    h = ram_harness(("a", 500))
    h.arrive("a1", "a")
    sid = slot_of(h, "a")
    out = h.send(SlotUsage(1.0, sid, {"ram": 900}))
    assert grows(out) == [GrowLease(sid, "a", "ram", 400, 10)]
    pool = h.scheduler.pool.pools["ram"]
    assert (pool.used_mb, pool.promised_mb) == (900, 900)  # held while the ledger answers
    assert h.send(SlotUsage(3.0, sid, {"ram": 950})) == []  # no second ask meanwhile


def test_a_granted_grow_keeps_the_slot_running_with_a_bigger_lease() -> None:
    h = ram_harness(("a", 500))
    h.arrive("a1", "a")
    sid = slot_of(h, "a")
    h.send(SlotUsage(1.0, sid, {"ram": 900}))
    assert h.send(LeaseGrown(1.5, sid, "ram", 400, granted=True)) == []
    slot = h.scheduler.pool.slots[sid]
    assert slot.share("ram") == 900
    assert h.send(SlotUsage(3.0, sid, {"ram": 900})) == []
    assert stops(h.tick(100.0)) == []
    assert slot.state is SlotState.READY
    # It keeps growing: it asks again, for what it uses beyond the grown lease.
    assert grows(h.send(SlotUsage(101.0, sid, {"ram": 1100}))) == [
        GrowLease(sid, "a", "ram", 200, 10)
    ]


def test_a_refused_slot_is_stopped_at_the_end_of_the_grace_period() -> None:
    h = ram_harness(("a", 500))
    h.arrive("a1", "a")  # running on the slot when it is stopped
    sid = slot_of(h, "a")
    h.at(1.0).send(SlotUsage(1.0, sid, {"ram": 900}))
    out = h.at(2.0).send(LeaseGrown(2.0, sid, "ram", 400, granted=False, reason="no room"))
    assert out == []
    assert h.scheduler.pool.pools["ram"].used_mb == 500  # the held difference went back
    assert h.scheduler.next_wakeup() == 12.0
    assert stops(h.at(11.9).send(SlotUsage(11.9, sid, {"ram": 900}))) == []
    out = h.tick(12.0)
    (stop,) = stops(out)
    assert stop.error
    assert "model 'a' used 900 MB on ram, its lease holds 500 MB" in stop.reason
    assert "the ledger refused 400 MB more [no room]" in stop.reason
    (abort,) = [e for e in out if isinstance(e, AbortRequest)]
    assert abort.request_id == "a1"
    assert abort.reason == stop.reason
    assert abort.code == 503
    # The measured peak is the model's estimate for its next load.
    assert h.scheduler.models["a"].vram_mb == 900
    out = h.at(13.0).arrive("a2", "a")
    (lease,) = [e for e in out if isinstance(e, AcquireLease)]
    assert lease.mb_per_pool == 900
    assert dispatched(out) == ["a2"]


def test_a_refused_slot_that_shrinks_back_within_the_grace_period_keeps_running() -> None:
    h = ram_harness(("a", 500))
    h.arrive("a1", "a")
    sid = slot_of(h, "a")
    h.send(SlotUsage(1.0, sid, {"ram": 900}))
    h.send(LeaseGrown(2.0, sid, "ram", 400, granted=False))
    assert h.send(SlotUsage(5.0, sid, {"ram": 520})) == []
    assert stops(h.tick(20.0)) == []
    assert h.scheduler.pool.slots[sid].state is SlotState.READY
    assert h.scheduler.next_wakeup() != 12.0


def test_no_room_in_the_coordinators_own_books_is_a_refusal_without_asking() -> None:
    # b holds 1400 of the 2000 MB: a's 900 MB would over-promise the pool.
    h = ram_harness(("a", 500), ("b", 1400))
    h.arrive("a1", "a")
    h.arrive("b1", "b")
    sid = slot_of(h, "a")
    assert h.send(SlotUsage(1.0, sid, {"ram": 900})) == []
    out = h.tick(11.0)
    (stop,) = stops(out)
    assert "400 MB more could not be granted" in stop.reason
    assert "promised the rest of ram to other models" in stop.reason


def test_a_model_stopped_twice_in_a_row_is_refused_until_an_admin_load() -> None:
    h = ram_harness(("a", 500), capacity=4000)
    for round_, t in enumerate((0.0, 100.0)):
        h.at(t).arrive(f"a{round_}", "a")
        h.done(f"a{round_}")
        sid = slot_of(h, "a")
        lease = h.scheduler.pool.slots[sid].share("ram")
        h.send(SlotUsage(t + 1, sid, {"ram": lease + 1000}))
        h.send(LeaseGrown(t + 1, sid, "ram", 1000, granted=False))
        assert len(stops(h.tick(t + 11))) == 1
    assert h.scheduler.models["a"].vram_mb == 2500  # 1500, then 2500 measured
    out = h.at(200.0).arrive("a9", "a")
    (reject,) = [e for e in out if isinstance(e, Reject)]
    assert reject.code == 507
    assert "stopped 2 times in a row" in reject.reason
    assert "used 2500 MB on ram, its lease holds 1500 MB" in reject.reason
    out = h.at(201.0).send(AdminLoad(201.0, "a"))
    assert [e.mb_per_pool for e in out if isinstance(e, AcquireLease)] == [2500]
    assert dispatched(h.at(202.0).arrive("a10", "a")) == ["a10"]


def test_requests_queued_for_a_model_refused_for_overuse_are_answered() -> None:
    cfg = SchedulerConfig(overuse_grace_s=0.0, overuse_strikes=1)
    h = Harness([model("a", 500)], pools=(("ram", 4000),), config=cfg)
    h.arrive("a1", "a")  # running
    h.arrive("a2", "a")  # queued behind it (target_inflight 1)
    sid = slot_of(h, "a")
    h.send(SlotUsage(1.0, sid, {"ram": 900}))
    out = h.send(LeaseGrown(1.0, sid, "ram", 400, granted=False))
    assert len(stops(out)) == 1
    assert [e.request_id for e in out if isinstance(e, AbortRequest)] == ["a1"]
    assert [(e.request_id, e.code) for e in out if isinstance(e, Reject)] == [("a2", 507)]
    assert h.scheduler.queue_length == 0


def test_a_model_that_ran_within_its_lease_in_between_starts_counting_again() -> None:
    h = ram_harness(("a", 500), capacity=8000)
    for round_, t in enumerate((0.0, 100.0, 200.0)):
        h.at(t).arrive(f"a{round_}", "a")
        h.done(f"a{round_}")
        sid = slot_of(h, "a")
        if round_ == 1:  # this load stays within its lease and is unloaded when idle
            h.tick(t + 50 + 300)
            continue
        lease = h.scheduler.pool.slots[sid].share("ram")
        h.send(SlotUsage(t + 1, sid, {"ram": lease + 500}))
        h.send(LeaseGrown(t + 1, sid, "ram", 500, granted=False))
        h.tick(t + 11)
    assert h.scheduler.models["a"].overuse_strikes == 1
    assert not h.scheduler.models["a"].overuse_refused


def test_a_pinned_model_stopped_for_overuse_comes_back_with_its_measured_size() -> None:
    h = Harness([model("p", 500, pin=True)], pools=(("ram", 4000),), config=CONFIG)
    h.send(Tick(0.0))
    sid = slot_of(h, "p")
    h.send(SlotUsage(1.0, sid, {"ram": 900}))
    h.send(LeaseGrown(1.0, sid, "ram", 400, granted=False))
    assert len(stops(h.tick(11.0))) == 1
    wake = h.scheduler.next_wakeup()
    assert wake is not None
    out = h.tick(wake)
    assert [e.mb_per_pool for e in out if isinstance(e, AcquireLease)] == [900]


def test_an_answer_for_a_slot_already_gone_changes_nothing() -> None:
    h = ram_harness(("a", 500), ("b", 1800))
    h.arrive("a1", "a")
    h.done("a1")
    sid = slot_of(h, "a")
    h.send(SlotUsage(1.0, sid, {"ram": 900}))
    h.at(2.0).arrive("b1", "b")  # evicts a (its 900 held MB go with it)
    assert sid not in h.scheduler.pool.slots
    assert h.send(LeaseGrown(3.0, sid, "ram", 400, granted=True)) == []
    pool = h.scheduler.pool.pools["ram"]
    assert (pool.used_mb, pool.promised_mb) == (1800, 1800)


def test_usage_of_a_slot_that_is_not_ready_is_ignored() -> None:
    h = Harness([model("a", 500)], pools=(("ram", 2000),), config=CONFIG, auto=False)
    out = h.arrive("a1", "a")
    (lease,) = [e for e in out if isinstance(e, AcquireLease)]
    assert h.send(SlotUsage(1.0, lease.slot_id, {"ram": 1900})) == []


def test_a_split_slot_asks_on_each_pool_it_overruns() -> None:
    h = Harness(
        [model("big", 3000, splittable=True)],
        pools=(("gpu0", 2000), ("gpu1", 2000)),
        config=CONFIG,
    )
    h.arrive("b1", "big")
    sid = slot_of(h, "big")
    out = h.send(SlotUsage(1.0, sid, {"gpu0": 1500, "gpu1": 1700}))
    assert grows(out) == [GrowLease(sid, "big", "gpu1", 200, 10)]
    assert h.scheduler.pool.slots[sid].peak_mb == 3400  # heaviest pool, times two


def test_books_hold_under_random_usage_grows_and_refusals() -> None:
    import random

    rng = random.Random(7)
    cfg = SchedulerConfig(overuse_grace_s=3.0, overuse_strikes=3)
    h = Harness(
        [model("a", 900), model("b", 1500), model("c", 2500, splittable=True), model("p", 600)],
        pools=(("gpu0", 4000), ("gpu1", 4000)),
        config=cfg,
    )
    h.send(AdminLoad(0.0, "p"))
    running: list[str] = []
    asked: list[GrowLease] = []
    for i in range(3000):
        t = i * 0.5
        h.now = t
        roll = rng.random()
        if roll < 0.3:
            h.arrive(f"r{i}", rng.choice("abc"))
            running.append(f"r{i}")
        elif roll < 0.5 and running:
            h.done(running.pop(rng.randrange(len(running))))
        elif roll < 0.8:
            ready = [s for s in h.scheduler.pool if s.state is SlotState.READY]
            if ready:
                s = rng.choice(ready)
                used = {p: int(s.share(p) * rng.uniform(0.5, 1.6)) for p in s.pools}
                asked.extend(grows(h.send(SlotUsage(t, s.slot_id, used))))
        elif asked:
            g = asked.pop(rng.randrange(len(asked)))
            h.send(LeaseGrown(t, g.slot_id, g.pool, g.mb, granted=rng.random() < 0.5))
        else:
            h.tick(t)
        for p in h.scheduler.pool.pools.values():
            assert p.used_mb <= p.capacity_mb
            assert p.promised_mb <= p.capacity_mb
            live = sum(s.share(p.pool_id) for s in p.slots.values() if s.live)
            assert live == p.promised_mb
            held = sum(s.share(p.pool_id) for s in p.slots.values() if s.lease_requested)
            assert held == p.used_mb
    stopped = [e for e in h.log if isinstance(e, StopSlot) and e.error]
    assert stopped, "the workload never stopped a slot for overuse"
    assert any(isinstance(e, GrowLease) for e in h.log)
