"""Model pool behaviour of the scheduler: loading, eviction, idle unloading, replicas, admin."""

from __future__ import annotations

import pytest

from model_boss.scheduling import (
    AcquireLease,
    AdminLoad,
    AdminUnload,
    LeaseDenied,
    LeaseGranted,
    LoadRefused,
    PreemptAsked,
    Reject,
    ReleaseLease,
    SchedulerConfig,
    SlotFailed,
    SlotReady,
    SlotState,
    SlotStopped,
    StartSlot,
    StopSlot,
    Tick,
)
from tests.scheduling.conftest import Harness, dispatched, model, of_type


def stops(effects: object) -> list[str]:
    return [e.model for e in of_type(effects, StopSlot) if isinstance(e, StopSlot)]  # type: ignore[arg-type]


def test_idle_model_is_evicted_for_a_cold_one(two_models: Harness) -> None:
    h = two_models
    h.arrive("a1", "a")
    h.done("a1")
    out = h.at(1.0).arrive("b1", "b")
    assert stops(out) == ["a"]
    assert dispatched(out) == ["b1"]


def test_pinned_model_is_never_a_victim() -> None:
    # The pinned model was never asked for (the cheapest slot to lose by demand); the cold
    # model fits beside it only if the idle, recently used one goes.
    h = Harness(
        [model("p", 4000, pin=True), model("a", 4000), model("b", 5000)],
        pools=(("gpu0", 10000),),
    )
    out = h.send(Tick(0.0))  # pinned models load on the first event
    assert [e.model for e in out if isinstance(e, AcquireLease)] == ["p"]
    for i in range(5):
        h.arrive(f"a{i}", "a")
        h.done(f"a{i}")
    out = h.at(1.0).arrive("b1", "b")
    assert stops(out) == ["a"]
    assert dispatched(out) == ["b1"]
    assert [s.model for s in h.scheduler.pool if s.live] == ["p", "b"]


def test_split_slot_frees_only_its_share_on_each_gpu() -> None:
    # "big" sits on both GPUs with 15000 MB each; evicting it frees 15000 on each, not 30000.
    h = Harness(
        [
            model("big", 30000, splittable=True, target_inflight=1),
            model("y", 5000, target_inflight=1),
            model("x", 20000, target_inflight=1),
        ],
        pools=(("gpu0", 24000), ("gpu1", 24000)),
    )
    h.arrive("b1", "big")
    h.done("b1")
    h.arrive("y1", "y")  # busy on one GPU
    out = h.at(1.0).arrive("x1", "x")
    assert stops(out) == ["big"]
    assert dispatched(out) == ["x1"]
    for pool in h.scheduler.pool.pools.values():
        assert pool.promised_mb <= pool.capacity_mb
        assert pool.used_mb <= pool.capacity_mb
    (lease,) = [e for e in out if isinstance(e, AcquireLease)]
    y_pools = next(s.pools for s in h.scheduler.pool if s.model == "y")
    assert lease.pools != y_pools  # the 20000 MB go where y's 5000 MB are not


def test_splittable_model_is_split_when_pinned_models_leave_no_gpu_room_for_it() -> None:
    # 18000 MB fit on a 24000 MB GPU, but pinned models leave 10000 on each: split 9000 x 2.
    h = Harness(
        [
            model("p0", 14000, pin=True),
            model("p1", 14000, pin=True),
            model("m", 18000, splittable=True),
        ],
        pools=(("gpu0", 24000), ("gpu1", 24000)),
    )
    h.send(Tick(0.0))
    out = h.at(1.0).arrive("r1", "m")
    assert dispatched(out) == ["r1"]
    (lease,) = [e for e in out if isinstance(e, AcquireLease)]
    assert (lease.pools, lease.mb_per_pool) == (("gpu0", "gpu1"), 9000)


def test_model_that_fits_on_one_gpu_is_not_split_to_avoid_an_eviction() -> None:
    # 10000 MB free on each GPU, 12000 needed: evict the idle model rather than split.
    h = Harness(
        [model("a", 14000), model("c", 14000), model("m", 12000, splittable=True)],
        pools=(("gpu0", 24000), ("gpu1", 24000)),
    )
    for rid, mid in (("a1", "a"), ("c1", "c")):
        h.arrive(rid, mid)
        h.done(rid)
    out = h.at(1.0).arrive("m1", "m")
    assert len(stops(out)) == 1
    (lease,) = [e for e in out if isinstance(e, AcquireLease)]
    assert len(lease.pools) == 1


def test_admin_unload_lets_a_waiting_cold_model_load_at_once() -> None:
    h = Harness([model("a", 6000, target_inflight=1), model("b", 6000)], pools=(("gpu0", 10000),))
    h.arrive("a0", "a")  # loaded and busy
    h.at(0.5).arrive("b1", "b", priority=50)  # a batch request, blocked behind busy a
    h.send(AdminUnload(1.0, "a"))
    out = h.at(2.0).done("a0")  # a finishes and stops: the GPU is empty
    assert "b1" in dispatched(out)


def test_admin_load_never_drains_a_slot_that_became_busy_after_the_last_round() -> None:
    h = Harness(
        [
            model("a", 6000, target_inflight=1),
            model("b", 6000, target_inflight=1),
            model("c", 6000),
            model("d", 6000),
        ],
        pools=(("gpu0", 12000),),
    )
    h.arrive("a0", "a")
    h.done("a0")
    h.arrive("b0", "b")
    h.done("b0")
    h.at(1.0).arrive("c0", "c")  # a planning round sees both a and b idle
    h.done("c0")
    (other,) = [s.model for s in h.scheduler.pool if s.live and s.model != "c"]
    h.at(2.0).arrive("x1", other)  # now running
    h.at(2.0).arrive("x2", other)  # and one queued behind it
    out = h.send(AdminLoad(3.0, "d"))
    assert stops(out) == ["c"]
    assert all(s.state is SlotState.READY for s in h.scheduler.pool if s.model == other)


def test_model_that_only_fits_where_pinned_models_sit_is_rejected_at_once() -> None:
    h = Harness([model("p", 6000, pin=True), model("b", 6000)], pools=(("gpu0", 10000),))
    (reject,) = of_type(h.arrive("b1", "b"), Reject)
    assert isinstance(reject, Reject)
    assert reject.code == 507
    assert "pinned models hold 6000 MB" in reject.reason
    assert "at most 4000 MB" in reject.reason
    assert h.scheduler.queue_length == 0


def test_model_that_fits_beside_pinned_models_on_another_gpu_is_served() -> None:
    h = Harness(
        [model("p", 6000, pin=True), model("b", 6000)],
        pools=(("gpu0", 10000), ("gpu1", 8000)),
    )
    out = h.arrive("b1", "b")
    assert of_type(out, Reject) == []
    assert dispatched(out) == ["b1"]


def test_split_model_is_rejected_only_when_no_split_fits_beside_pinned_models() -> None:
    pools = (("gpu0", 10000), ("gpu1", 10000), ("gpu2", 10000))
    pinned = model("p", 8000, pin=True)
    fits = Harness([pinned, model("big", 16000, splittable=True)], pools=pools)
    assert dispatched(fits.arrive("r1", "big")) == ["r1"]  # 8000 on gpu1 and on gpu2
    crowded = Harness([pinned, model("big", 21000, splittable=True)], pools=pools)
    (reject,) = of_type(crowded.arrive("r1", "big"), Reject)
    assert isinstance(reject, Reject)
    assert reject.code == 507


def test_pinning_a_model_rejects_queued_requests_it_leaves_no_room_for() -> None:
    h = Harness([model("a", 6000), model("b", 6000, target_inflight=1)], pools=(("gpu0", 10000),))
    h.arrive("b1", "b")  # b is loaded and busy
    h.arrive("a1", "a")  # a waits for b
    assert h.scheduler.queue_length == 1
    out = h.send(AdminLoad(1.0, "b"))  # pin b: a can never load beside it
    (reject,) = of_type(out, Reject)
    assert isinstance(reject, Reject)
    assert (reject.request_id, reject.code) == ("a1", 507)
    assert h.scheduler.queue_length == 0


def test_pinned_model_is_leased_at_urgent_priority() -> None:
    h = Harness([model("p", pin=True)], auto=False)
    (lease,) = of_type(h.send(Tick(0.0)), AcquireLease)
    assert isinstance(lease, AcquireLease)
    assert lease.priority == 1


def test_idle_model_unloads_after_stay_warm() -> None:
    h = Harness([model("a", category="llm")])
    h.arrive("r1", "a")
    h.at(10.0).done("r1")
    assert h.scheduler.next_wakeup() == 310.0
    assert stops(h.tick(309.9)) == []
    assert stops(h.tick(310.0)) == ["a"]


def test_stay_warm_defaults_per_category() -> None:
    assert model("a", category="llm").default_stay_warm_s == 300.0
    assert model("a", category="diffusion").default_stay_warm_s == 900.0
    assert model("a", category="vision").default_stay_warm_s == 60.0
    assert model("a", category="llm", stay_warm_s=5.0).default_stay_warm_s == 5.0


def test_x_stay_warm_of_the_last_request_overrides_the_default() -> None:
    h = Harness([model("a")])
    h.arrive("r1", "a", stay_warm_s=0.0)
    assert stops(h.at(1.0).done("r1")) == ["a"]


def test_busy_model_is_not_unloaded_when_idle_time_passes() -> None:
    h = Harness([model("a")])
    h.arrive("r1", "a")
    assert stops(h.tick(1000.0)) == []


def test_pinned_model_never_unloads_when_idle() -> None:
    h = Harness([model("p", pin=True)])
    h.send(Tick(0.0))
    h.tick(100_000.0)
    assert stops(h.log) == []


def test_slot_failure_rejects_its_waiters() -> None:
    h = Harness([model("a")], auto=False)
    (lease,) = of_type(h.arrive("r1", "a"), AcquireLease)
    assert isinstance(lease, AcquireLease)
    h.send(LeaseGranted(0.0, lease.slot_id))
    out = h.send(SlotFailed(1.0, lease.slot_id, "exit code 1"))
    assert ReleaseLease(lease.slot_id) in out
    (reject,) = of_type(out, Reject)
    assert isinstance(reject, Reject)
    assert reject.request_id == "r1"
    assert "exit code 1" in reject.reason


def test_denied_lease_is_retried_after_a_pause() -> None:
    cfg = SchedulerConfig(retry_after_s=5.0)
    h = Harness([model("a")], config=cfg, auto=False)
    (lease,) = of_type(h.arrive("r1", "a"), AcquireLease)
    assert isinstance(lease, AcquireLease)
    assert (
        of_type(h.send(LeaseDenied(0.0, lease.slot_id, "held by a training job")), AcquireLease)
        == []
    )
    assert of_type(h.tick(4.0), AcquireLease) == []
    assert len(of_type(h.tick(5.0), AcquireLease)) == 1


def leases(effects: object) -> list[AcquireLease]:
    return [e for e in of_type(effects, AcquireLease) if isinstance(e, AcquireLease)]  # type: ignore[arg-type]


def test_pinned_model_denied_its_lease_is_tried_again_backing_off() -> None:
    h = Harness([model("p", pin=True)], config=SchedulerConfig(retry_after_s=5.0), auto=False)
    (first,) = leases(h.send(Tick(0.0)))
    h.send(LeaseDenied(0.0, first.slot_id, "held by a training job"))
    assert leases(h.tick(4.9)) == []
    (second,) = leases(h.tick(5.0))  # 5 s later
    h.send(LeaseDenied(5.0, second.slot_id, "still held"))
    assert leases(h.tick(14.9)) == []
    (third,) = leases(h.tick(15.0))  # then 10 s
    h.send(LeaseGranted(15.0, third.slot_id))
    h.send(SlotReady(15.0, third.slot_id))
    assert [s.model for s in h.scheduler.pool if s.state is SlotState.READY] == ["p"]


def test_crashed_pinned_replica_comes_back() -> None:
    h = Harness([model("p", pin=True)], config=SchedulerConfig(retry_after_s=5.0))
    h.send(Tick(0.0))
    (slot,) = list(h.scheduler.pool)
    h.send(SlotFailed(1.0, slot.slot_id, "exit code 1"))
    assert list(h.scheduler.pool) == []
    h.tick(6.0)
    assert [(s.model, s.pinned, s.state) for s in h.scheduler.pool] == [
        ("p", True, SlotState.READY)
    ]


def test_unloaded_model_is_not_brought_back_after_its_lease_was_denied() -> None:
    h = Harness([model("a")], config=SchedulerConfig(retry_after_s=5.0), auto=False)
    (lease,) = leases(h.send(AdminLoad(0.0, "a")))
    h.send(LeaseDenied(0.0, lease.slot_id, "held"))
    h.send(AdminUnload(1.0, "a"))
    assert leases(h.tick(10_000.0)) == []


def test_replicas_scale_out_up_to_replica_max() -> None:
    h = Harness([model("a", target_inflight=1, replicas=1, replica_max=2)])
    out = []
    for rid in ["r1", "r2", "r3"]:
        out += h.arrive(rid, "a")
    assert len(of_type(h.log, StartSlot)) == 2
    assert sorted(dispatched(out)) == ["r1", "r2"]
    assert dispatched(h.done("r1")) == ["r3"]


def test_model_too_large_for_one_gpu_is_split_across_gpus() -> None:
    h = Harness(
        [model("big", 40000, splittable=True)],
        pools=(("gpu0", 24000), ("gpu1", 24000)),
        auto=False,
    )
    (lease,) = of_type(h.arrive("r1", "big"), AcquireLease)
    assert isinstance(lease, AcquireLease)
    assert (lease.pools, lease.mb_per_pool) == (("gpu0", "gpu1"), 20000)


def three_models() -> Harness:
    """a, b and c (6 GB each) on one 10 GB GPU: only one fits at a time."""
    return Harness(
        [model(m, 6000, target_inflight=4) for m in "abc"],
        pools=(("gpu0", 10000),),
    )


def test_swap_batches_the_model_with_more_queued_requests() -> None:
    h = three_models()
    h.arrive("a0", "a")  # a is loaded and busy
    h.at(0.1).arrive("b1", "b")  # blocked behind a
    for i, t in enumerate([0.2, 0.3, 0.4]):
        h.at(t).arrive(f"c{i}", "c")
    out = h.at(1.0).done("a0")
    assert dispatched(out) == ["c0", "c1", "c2"]  # c, asked for three times, goes first


def test_batching_extra_wait_is_bounded() -> None:
    h = three_models()
    h.arrive("a0", "a")
    h.at(0.1).arrive("b1", "b")
    for i in range(3):
        h.at(6.0 + i).arrive(f"c{i}", "c")  # beyond b1's key + batch_window_s (5 s)
    assert dispatched(h.at(10.0).done("a0")) == ["b1"]


def test_admin_load_keeps_the_model_until_admin_unload() -> None:
    h = Harness([model("a")])
    h.send(AdminLoad(0.0, "a"))
    assert len(of_type(h.log, StartSlot)) == 1
    h.tick(10_000.0)
    assert stops(h.log) == []
    assert stops(h.send(AdminUnload(10_001.0, "a"))) == ["a"]


def test_admin_load_of_unknown_model_is_refused() -> None:
    h = Harness([model("a")])
    assert of_type(h.send(AdminLoad(0.0, "nope")), LoadRefused) != []


def test_measured_footprint_replaces_the_estimate_for_the_next_load() -> None:
    h = Harness([model("a", 4000)], auto=False)
    (lease,) = of_type(h.arrive("r1", "a"), AcquireLease)
    assert isinstance(lease, AcquireLease)
    h.send(LeaseGranted(0.0, lease.slot_id))
    h.send(SlotReady(1.0, lease.slot_id, footprint_mb=5200))
    h.done("r1")
    h.send(AdminUnload(2.0, "a"))
    from model_boss.scheduling import SlotStopped

    h.send(SlotStopped(2.5, lease.slot_id))
    (again,) = of_type(h.at(3.0).arrive("r2", "a"), AcquireLease)
    assert isinstance(again, AcquireLease)
    assert again.mb_per_pool == 5200


def test_a_smaller_measured_footprint_does_not_shrink_the_next_lease() -> None:
    h = Harness([model("a", 4000)], auto=False)
    (lease,) = of_type(h.arrive("r1", "a"), AcquireLease)
    assert isinstance(lease, AcquireLease)
    h.send(LeaseGranted(0.0, lease.slot_id))
    h.send(SlotReady(1.0, lease.slot_id, footprint_mb=900))  # e.g. RAM measured at start-up
    h.done("r1")
    h.send(AdminUnload(2.0, "a"))
    from model_boss.scheduling import SlotStopped

    h.send(SlotStopped(2.5, lease.slot_id))
    (again,) = of_type(h.at(3.0).arrive("r2", "a"), AcquireLease)
    assert isinstance(again, AcquireLease)
    assert again.mb_per_pool == 4000


def test_preempt_asked_drains_idle_slots_of_lower_priority() -> None:
    h = Harness([model("a"), model("b")])
    h.arrive("a1", "a", priority=50)
    h.arrive("b1", "b", priority=1)
    h.done("a1")
    h.done("b1")
    out = h.send(PreemptAsked(1.0, "gpu0", 4000, priority=5))
    assert stops(out) == ["a"]


def test_draining_slot_takes_no_new_work_and_stops_when_empty() -> None:
    h = Harness([model("a", target_inflight=2)])
    h.arrive("r1", "a")
    out = h.send(AdminUnload(1.0, "a"))
    assert stops(out) == []  # r1 still runs
    (slot,) = h.scheduler.pool.slots.values()
    assert slot.state is SlotState.DRAINING
    assert stops(h.at(2.0).done("r1")) == ["a"]


def test_unload_during_load_stops_the_slot_once_it_is_up() -> None:
    h = Harness([model("a")], auto=False)
    (lease,) = of_type(h.arrive("r1", "a"), AcquireLease)
    assert isinstance(lease, AcquireLease)
    h.send(LeaseGranted(0.0, lease.slot_id))
    out = h.send(AdminUnload(0.5, "a"))
    assert stops(out) == ["a"]  # the loading process is stopped at once
    assert stops(h.send(SlotReady(1.0, lease.slot_id))) == []  # and not twice


def test_lease_granted_after_unload_is_given_back() -> None:
    h = Harness([model("a")], auto=False)
    (lease,) = of_type(h.arrive("r1", "a"), AcquireLease)
    assert isinstance(lease, AcquireLease)
    h.send(AdminUnload(0.5, "a"))
    out = h.send(LeaseGranted(1.0, lease.slot_id))
    assert out[:1] == [ReleaseLease(lease.slot_id)]
    assert of_type(out, StartSlot) == []


def test_cold_request_blocked_by_a_loading_model_gets_its_memory_later() -> None:
    # b needs the memory a is loading into; a then stays busy with a stream of requests.
    h = Harness(
        [model("a", 6000, target_inflight=1), model("b", 6000)],
        pools=(("gpu0", 10000),),
        auto=False,
    )
    (lease_a,) = of_type(h.arrive("a0", "a", priority=1), AcquireLease)
    assert isinstance(lease_a, AcquireLease)
    h.send(LeaseGranted(0.0, lease_a.slot_id))
    h.at(0.1).arrive("b0", "b", priority=1)
    h.send(SlotReady(30.0, lease_a.slot_id))  # a0 runs; a is busy from now on
    running = "a0"
    lease_b = None
    for t in range(31, 60):
        h.at(float(t)).arrive(f"a{t}", "a", priority=1)
        out = h.done(running)
        out += h.tick(t + 0.5)
        leases = of_type(out, AcquireLease)
        if leases:
            lease_b = leases[0]
            break
        stopped = of_type(out, StopSlot)
        if stopped:
            from model_boss.scheduling import SlotStopped

            out = h.send(SlotStopped(t + 0.6, lease_a.slot_id))
            leases = of_type(out, AcquireLease)
            lease_b = leases[0] if leases else None
            break
        (running,) = dispatched(out)
    assert isinstance(lease_b, AcquireLease)
    assert lease_b.model == "b"


def test_stop_slot_says_whether_the_model_was_evicted_or_just_went_idle(
    two_models: Harness,
) -> None:
    h = two_models
    h.arrive("a1", "a")
    h.done("a1")
    (evicted,) = of_type(h.at(1.0).arrive("b1", "b"), StopSlot)
    assert isinstance(evicted, StopSlot)
    assert (evicted.model, evicted.evicted, evicted.reason) == ("a", True, "room for b")
    h.done("b1")
    (idle,) = of_type(h.tick(10_000.0), StopSlot)
    assert isinstance(idle, StopSlot)
    assert (idle.model, idle.evicted, idle.reason) == ("b", False, "idle")


def popular_and_rare(config: SchedulerConfig | None = None) -> Harness:
    """Popular "p" and rare "r" loaded on a 10 GB GPU; "c" (4 GB) needs one of them to go."""
    h = Harness(
        [model("p", 4000), model("r", 4000), model("c", 4000)],
        pools=(("gpu0", 10000),),
        config=config,
    )
    for i in range(5):
        h.arrive(f"p{i}", "p")
        h.done(f"p{i}")
    h.arrive("r0", "r")  # r is loaded and serving r0 when c's request comes
    return h


def test_cold_model_evicts_an_idle_slot_rather_than_wait_for_a_serving_one() -> None:
    h = popular_and_rare()
    out = h.at(1.0).arrive("c0", "c")
    assert stops(out) == ["p"]
    assert dispatched(out) == ["c0"]


def test_drain_serving_for_cold_waits_for_the_rarely_used_serving_slot() -> None:
    h = popular_and_rare(SchedulerConfig(drain_serving_for_cold=True))
    out = h.at(1.0).arrive("c0", "c")
    assert stops(out) == []  # r drains: it finishes r0 first, and p stays
    assert dispatched(out) == []
    out = h.at(3.0).done("r0")
    assert stops(out) == ["r"]
    assert dispatched(out) == ["c0"]
    assert {s.model for s in h.scheduler.pool} == {"p", "c"}


def test_primed_demand_keeps_the_model_known_to_be_popular() -> None:
    h = Harness([model(m, 4000) for m in "abc"], pools=(("gpu0", 10000),))
    h.scheduler.prime_demand({"a": 100.0, "b": 1.0})
    for rid, m in [("b1", "b"), ("b2", "b"), ("a1", "a")]:
        h.arrive(rid, m)
        h.done(rid)
    out = h.at(1.0).arrive("c1", "c")
    assert stops(out) == ["b"]  # b was asked for more lately, a is known to be popular


def test_prime_demand_rejects_unknown_models_and_bad_weights() -> None:
    h = Harness([model("a")])
    with pytest.raises(ValueError, match="unknown model"):
        h.scheduler.prime_demand({"zzz": 1.0})
    with pytest.raises(ValueError, match="finite"):
        h.scheduler.prime_demand({"a": -1.0})


def test_a_queued_request_is_rejected_when_the_measured_footprint_no_longer_fits() -> None:
    h = Harness(
        [model("p", 4000, pin=True), model("a", 5000, target_inflight=1)],
        pools=(("gpu0", 10000),),
        auto=False,
    )
    (pinned,) = of_type(h.send(Tick(0.0)), AcquireLease)
    assert isinstance(pinned, AcquireLease)
    h.send(LeaseGranted(0.0, pinned.slot_id))
    h.send(SlotReady(0.0, pinned.slot_id))
    (lease,) = of_type(h.arrive("a1", "a"), AcquireLease)  # 5000 fits beside the pinned 4000
    assert isinstance(lease, AcquireLease)
    h.send(LeaseGranted(0.0, lease.slot_id))
    out = h.send(SlotReady(0.0, lease.slot_id, footprint_mb=7000))  # measured: bigger
    assert dispatched(out) == ["a1"]
    assert of_type(h.arrive("a2", "a"), Reject) == []  # waits for a's busy slot
    h.send(AdminUnload(1.0, "a"))
    (stop,) = of_type(h.done("a1"), StopSlot)  # a's slot goes once a1 is done...
    assert isinstance(stop, StopSlot)
    h.send(SlotStopped(1.0, stop.slot_id))
    h.tick(2.0)  # ...and a2 needs a new slot of 7000 MB: never room beside the pinned 4000
    (reject,) = of_type(h.log, Reject)
    assert isinstance(reject, Reject)
    assert (reject.request_id, reject.code) == ("a2", 507)


def test_a_request_held_by_its_cooldown_is_rejected_once_pinning_left_no_room() -> None:
    h = Harness([model("a", 6000), model("b", 6000)], pools=(("gpu0", 10000),))
    assert dispatched(h.arrive("a1", "a", client="c", cooldown_s=5.0)) == ["a1"]
    h.done("a1")
    assert of_type(h.arrive("a2", "a", client="c", cooldown_s=5.0), Reject) == []  # held
    h.arrive("b1", "b")
    h.done("b1")
    h.send(AdminLoad(1.0, "b"))  # pins b: a (6000) no longer fits beside it
    out = h.tick(6.0)  # the cooldown lets a2 go: it must not wait forever
    (reject,) = of_type(out, Reject)
    assert isinstance(reject, Reject)
    assert (reject.request_id, reject.code) == ("a2", 507)
    assert h.scheduler.queue_length == 0
