from __future__ import annotations

from model_boss.scheduling import PoolView, VictimCandidate, place


def test_placement_is_best_fit() -> None:
    pools = [PoolView("gpu0", 24000, 10000), PoolView("gpu1", 24000, 6000)]
    plan = place(5000, pools)
    assert plan is not None
    assert plan.pools == ("gpu1",)
    assert plan.victims == ()


def test_placement_evicts_on_the_cheapest_pool() -> None:
    cheap = VictimCandidate(1, 8000, load_s=2.0, demand=1.0)
    dear = VictimCandidate(2, 8000, load_s=60.0, demand=1.0)
    pools = [PoolView("gpu0", 10000, 2000, (dear,)), PoolView("gpu1", 10000, 2000, (cheap,))]
    plan = place(8000, pools)
    assert plan is not None
    assert (plan.pools, plan.victims) == (("gpu1",), (1,))


def test_placement_without_room_or_victims_is_none() -> None:
    assert place(8000, [PoolView("gpu0", 10000, 2000)]) is None
    assert place(8000, [PoolView("gpu0", 10000, 2000)], allow_evict=False) is None


def test_model_too_large_for_one_gpu_is_split_when_backend_supports_it() -> None:
    pools = [PoolView(f"gpu{i}", 24000, 24000) for i in range(4)]
    plan = place(40000, pools, splittable=True)
    assert plan is not None
    assert len(plan.pools) == 2  # the fewest GPUs that hold it
    assert plan.mb_per_pool == 20000


def test_model_too_large_for_one_gpu_is_not_split_when_backend_cannot() -> None:
    pools = [PoolView(f"gpu{i}", 24000, 24000) for i in range(4)]
    assert place(40000, pools, splittable=False) is None


def test_split_takes_victims_on_each_gpu() -> None:
    a = VictimCandidate(1, 12000, load_s=5.0, demand=1.0)
    b = VictimCandidate(2, 12000, load_s=5.0, demand=1.0)
    pools = [PoolView("gpu0", 24000, 12000, (a,)), PoolView("gpu1", 24000, 12000, (b,))]
    plan = place(40000, pools, splittable=True)
    assert plan is not None
    assert set(plan.victims) == {1, 2}
    assert plan.pools == ("gpu0", "gpu1")
