"""Queueing behaviour of the scheduler: order, aging, promotion, cooldown, bounds, cancel."""

from __future__ import annotations

from model_boss.scheduling import (
    AbortRequest,
    AcquireLease,
    LeaseGranted,
    Reject,
    RequestCancelled,
    SchedulerConfig,
    SlotReady,
    StartSlot,
)
from tests.scheduling.conftest import Harness, dispatched, model, of_type


def warm(h: Harness, model_id: str) -> None:
    """Load ``model_id`` with a throwaway request."""
    h.arrive(f"warmup-{model_id}", model_id)
    h.done(f"warmup-{model_id}")


def test_cold_model_is_leased_then_started_then_served() -> None:
    h = Harness([model("a")], auto=False)
    out = h.arrive("r1", "a")
    (lease,) = of_type(out, AcquireLease)
    assert isinstance(lease, AcquireLease)
    assert (lease.model, lease.pools, lease.mb_per_pool, lease.priority) == (
        "a",
        ("gpu0",),
        4000,
        10,
    )
    assert dispatched(out) == []
    out = h.send(LeaseGranted(0.0, lease.slot_id))
    assert of_type(out, StartSlot) == [StartSlot(lease.slot_id, "a", ("gpu0",), 4000)]
    out = h.send(SlotReady(1.0, lease.slot_id))
    assert dispatched(out) == ["r1"]


def test_request_for_warm_model_is_dispatched_at_once() -> None:
    h = Harness([model("a")])
    warm(h, "a")
    assert dispatched(h.arrive("r1", "a")) == ["r1"]


def test_fifo_within_a_priority_class() -> None:
    h = Harness([model("a", target_inflight=1)])
    warm(h, "a")
    h.arrive("r1", "a")
    for i, rid in enumerate(["r2", "r3", "r4"]):
        h.at(1.0 + i).arrive(rid, "a")
    order = []
    for rid in ["r1", "r2", "r3"]:
        order += dispatched(h.done(rid))
    assert order == ["r2", "r3", "r4"]


def test_higher_priority_class_runs_first() -> None:
    h = Harness([model("a", target_inflight=1)])
    warm(h, "a")
    h.arrive("running", "a")
    h.at(1.0).arrive("batch", "a", priority=50)
    h.at(2.0).arrive("normal", "a", priority=10)
    h.at(3.0).arrive("urgent", "a", priority=1)
    order = []
    for rid in ["running", "urgent", "normal"]:
        order += dispatched(h.done(rid))
    assert order == ["urgent", "normal", "batch"]


def test_batch_request_cannot_starve_forever() -> None:
    h = Harness([model("a", target_inflight=1)], config=SchedulerConfig(aging_s_per_level=10.0))
    warm(h, "a")
    h.arrive("u0", "a", priority=1)
    h.arrive("batch", "a", priority=50)
    started_at = None
    running = "u0"
    for t in range(1, 2000):
        h.at(float(t)).arrive(f"u{t}", "a", priority=1)  # a stream of urgent work
        (running,) = dispatched(h.done(running))
        if running == "batch":
            started_at = t
            break
    assert started_at is not None
    assert started_at <= 49 * 10 + 1  # its aged key (arrival + 490 s) beats newer urgent work


def test_warm_model_request_runs_ahead_of_a_cold_load(two_models: Harness) -> None:
    h = two_models
    warm(h, "a")
    h.arrive("a1", "a")  # a is busy now
    out = h.at(0.5).arrive("b1", "b")  # b needs a's memory: it waits
    assert of_type(out, AcquireLease) == []
    assert dispatched(h.at(1.0).arrive("a2", "a")) == ["a2"]  # promoted past b1


def test_cold_request_drains_busy_slots_after_a_bounded_wait(two_models: Harness) -> None:
    h = two_models
    warm(h, "a")
    h.arrive("a1", "a")
    h.at(0.5).arrive("b1", "b", priority=1)
    # b1's key (arrival + 0 aging for urgent) + busy_evict_after_s; a normal request
    # would wait 90 s longer (its aging offset) before it may drain busy work.
    assert h.scheduler.next_wakeup() == 2.5
    h.tick(2.5)  # a is drained: it takes no new work
    assert dispatched(h.at(3.0).arrive("a2", "a")) == []
    out = h.at(4.0).done("a1")  # a stops, b loads and runs
    assert dispatched(out) == ["b1"]


def test_client_cooldown_spaces_that_clients_requests() -> None:
    h = Harness([model("a", target_inflight=4)])
    warm(h, "a")
    assert dispatched(h.arrive("r1", "a", client="c", cooldown_s=5.0)) == ["r1"]
    assert dispatched(h.arrive("r2", "a", client="c", cooldown_s=5.0)) == []
    assert dispatched(h.arrive("other", "a", client="d", cooldown_s=5.0)) == ["other"]
    assert h.scheduler.next_wakeup() == 5.0
    assert dispatched(h.tick(4.9)) == []
    assert dispatched(h.tick(5.0)) == ["r2"]


def test_target_inflight_limits_concurrency_per_replica() -> None:
    h = Harness([model("a", target_inflight=2)])
    warm(h, "a")
    out = [rid for r in ("r1", "r2", "r3") for rid in dispatched(h.arrive(r, "a"))]
    assert out == ["r1", "r2"]
    assert dispatched(h.done("r1")) == ["r3"]


def test_queue_bound_rejects_with_a_reason() -> None:
    h = Harness([model("a")], config=SchedulerConfig(max_queue=2), auto=False)
    h.arrive("r1", "a")
    h.arrive("r2", "a")
    (reject,) = of_type(h.arrive("r3", "a"), Reject)
    assert isinstance(reject, Reject)
    assert reject.request_id == "r3"
    assert reject.code == 429
    assert "queue full" in reject.reason


def test_cancelled_queued_request_is_never_dispatched() -> None:
    h = Harness([model("a", target_inflight=1)])
    warm(h, "a")
    h.arrive("r1", "a")
    h.arrive("r2", "a")
    h.arrive("r3", "a")
    h.send(RequestCancelled(0.0, "r2"))
    assert dispatched(h.done("r1")) == ["r3"]
    assert h.scheduler.queue_length == 0


def test_cancelled_running_request_is_aborted_and_frees_its_place() -> None:
    h = Harness([model("a", target_inflight=1)])
    warm(h, "a")
    h.arrive("r1", "a")
    h.arrive("r2", "a")
    out = h.send(RequestCancelled(1.0, "r1"))
    assert next(e for e in out if isinstance(e, AbortRequest)).request_id == "r1"
    assert dispatched(out) == ["r2"]


def test_unknown_and_disabled_and_oversized_models_are_rejected() -> None:
    h = Harness(
        [model("off", enabled=False), model("huge", 30000)],
        pools=(("gpu0", 24000),),
    )
    codes = {}
    for rid, mid in [("r1", "nope"), ("r2", "off"), ("r3", "huge")]:
        (reject,) = of_type(h.arrive(rid, mid), Reject)
        assert isinstance(reject, Reject)
        codes[mid] = reject.code
    assert codes == {"nope": 404, "off": 409, "huge": 507}
