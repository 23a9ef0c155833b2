from __future__ import annotations

from model_boss.scheduling import VictimCandidate, keep_value, victims


def cand(sid: int, mb: int = 4000, **kw: object) -> VictimCandidate:
    base: dict[str, object] = {"load_s": 10.0, "demand": 1.0, "last_priority": 10}
    base.update(kw)
    return VictimCandidate(sid, mb, **base)  # type: ignore[arg-type]


def test_pinned_model_is_never_a_victim() -> None:
    assert victims(4000, [cand(1, pinned=True)]) is None
    assert victims(4000, [cand(1, pinned=True), cand(2)]) == [2]


def test_nothing_needed_means_no_victims() -> None:
    assert victims(0, [cand(1)]) == []


def test_not_enough_memory_means_no_victim_set() -> None:
    assert victims(9000, [cand(1), cand(2)]) is None


def test_busy_slots_are_victims_only_when_allowed() -> None:
    assert victims(4000, [cand(1, busy=True)]) is None
    assert victims(4000, [cand(1, busy=True)], allow_busy=True) == [1]


def test_idle_slot_is_preferred_over_busy_one_even_if_more_valuable() -> None:
    slots = [cand(1, busy=True, demand=0.001), cand(2, demand=100.0)]
    assert victims(4000, slots, allow_busy=True) == [2]


def test_idle_slots_go_before_busy_ones_whatever_the_demand_scale() -> None:
    # Demand units grow with every arrival between rescalings (up to 1e100): keep values far
    # above any fixed penalty must still leave busy slots for last.
    big = 1e15
    slots = [cand(1, demand=big), cand(2, busy=True, demand=1.0), cand(3, busy=True, demand=1.0)]
    assert victims(8000, slots, allow_busy=True) == [1, 2]
    assert victims(4000, slots, allow_busy=True) == [1]


def test_eviction_prefers_slot_last_used_by_lower_priority() -> None:
    assert victims(4000, [cand(1, last_priority=1), cand(2, last_priority=50)]) == [2]
    assert victims(4000, [cand(1, last_priority=50), cand(2, last_priority=1)]) == [1]


def test_eviction_weighs_reload_cost_against_memory_freed() -> None:
    # Same demand: the model that reloads fast goes first.
    assert victims(4000, [cand(1, load_s=30.0), cand(2, load_s=2.0)]) == [2]
    # A slot that frees three times the memory for a lower reload cost goes first.
    assert victims(4000, [cand(1, mb=12000), cand(2, mb=4000, load_s=20.0)]) == [1]
    # A model asked for rarely is cheaper to lose than a popular one.
    assert victims(4000, [cand(1, demand=5.0), cand(2, demand=0.1)]) == [2]


def test_victim_set_is_pruned_to_what_is_needed() -> None:
    # Cheapest per MB first would take 1 then 2 (2 alone suffices), so 1 is dropped.
    slots = [cand(1, mb=2000, demand=0.1), cand(2, mb=8000, demand=1.0)]
    assert victims(8000, slots) == [2]


def test_keep_value_is_load_time_times_demand_weighted_by_priority() -> None:
    assert keep_value(cand(1, load_s=10.0, demand=2.0, last_priority=10)) == 20.0
    assert keep_value(cand(1, last_priority=1)) > keep_value(cand(1, last_priority=50))


def test_priority_exponent_zero_ignores_who_used_the_slot_last() -> None:
    urgent = cand(1, last_priority=1, demand=1.0, priority_exponent=0.0)
    batch = cand(2, last_priority=50, demand=2.0, priority_exponent=0.0)
    assert keep_value(urgent) == keep_value(batch) / 2
    assert victims(4000, [urgent, batch]) == [1]  # the less demanded goes, whoever used it
