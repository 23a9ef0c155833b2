from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model_boss.scheduling import CooldownGate, RequestQueue


def test_queue_orders_by_class_then_arrival() -> None:
    q = RequestQueue(aging_s_per_level=10.0)
    for rid, prio, t in [("n1", 10, 0.0), ("u1", 1, 1.0), ("n2", 10, 2.0), ("u2", 1, 3.0)]:
        q.push(q.make(rid, "m", prio, "c", t))
    order = [q.pop("m").request_id for _ in range(4)]  # type: ignore[union-attr]
    assert order == ["u1", "u2", "n1", "n2"]


def test_aged_request_sorts_ahead_of_new_higher_class_work() -> None:
    q = RequestQueue(aging_s_per_level=10.0)
    q.push(q.make("batch", "m", 50, "c", 0.0))  # key 490
    q.push(q.make("urgent-late", "m", 1, "c", 500.0))  # key 500
    assert q.head("m").request_id == "batch"  # type: ignore[union-attr]


def test_cancelled_request_leaves_the_queue() -> None:
    q = RequestQueue(aging_s_per_level=10.0)
    q.push(q.make("r1", "m", 10, "c", 0.0))
    q.push(q.make("r2", "m", 10, "c", 1.0))
    assert q.cancel("r1") is not None
    assert q.count("m") == 1
    assert q.head("m").request_id == "r2"  # type: ignore[union-attr]
    assert "r1" not in q
    assert q.cancel("r1") is None


def test_cooldown_gate_holds_a_clients_next_request() -> None:
    q = RequestQueue(aging_s_per_level=10.0)
    gate = CooldownGate()
    first = q.make("r1", "m", 10, "c", 0.0, cooldown_s=5.0)
    second = q.make("r2", "m", 10, "c", 0.0, cooldown_s=5.0)
    assert gate.admit(first, 0.0)
    assert not gate.admit(second, 0.0)
    assert gate.next_release() is None  # waits until the first one runs
    gate.left_queue(first, 1.0, dispatched=True)
    assert gate.next_release() == 6.0
    assert gate.release_due(5.9) == []
    assert gate.release_due(6.0) == [second]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["push", "push", "cancel", "pop"]), st.sampled_from([1, 5, 10, 20, 50])
        ),
        max_size=60,
    )
)
def test_queue_always_pops_the_smallest_aged_key(ops: list[tuple[str, int]]) -> None:
    q = RequestQueue(aging_s_per_level=10.0)
    live: dict[str, tuple[float, int]] = {}
    for i, (op, prio) in enumerate(ops):
        if op == "push":
            req = q.make(f"r{i}", "m", prio, "c", float(i))
            q.push(req)
            live[req.request_id] = (req.key, req.seq)
        elif op == "cancel" and live:
            rid = sorted(live)[prio % len(live)]
            q.cancel(rid)
            del live[rid]
        elif op == "pop":
            got = q.pop("m")
            if not live:
                assert got is None
                continue
            best = min(live, key=live.__getitem__)
            assert got is not None
            assert got.request_id == best
            del live[best]
        assert q.count("m") == len(live) == len(q)
