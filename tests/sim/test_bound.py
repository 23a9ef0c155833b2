from __future__ import annotations

import itertools
import random
from collections import OrderedDict

import pytest

from model_boss.sim import belady_loads, load_bound, popularity_oracle_loads


def brute_force_min_loads(seq: list[str], capacity: int) -> int:
    """Exhaustive search over every eviction choice (small cases only)."""
    best = [len(seq)]

    def go(i: int, cache: frozenset[str], loads: int) -> None:
        if loads >= best[0]:
            return
        if i == len(seq):
            best[0] = loads
            return
        m = seq[i]
        if m in cache:
            go(i + 1, cache, loads)
        elif len(cache) < capacity:
            go(i + 1, cache | {m}, loads + 1)
        else:
            for victim in cache:
                go(i + 1, (cache - {victim}) | {m}, loads + 1)

    go(0, frozenset(), 0)
    return best[0]


@pytest.mark.parametrize("seed", range(12))
def test_belady_matches_exhaustive_search_on_small_cases(seed: int) -> None:
    rng = random.Random(seed)
    seq = [rng.choice("abcde") for _ in range(12)]
    capacity = rng.choice([1, 2, 3])
    assert belady_loads(seq, capacity) == brute_force_min_loads(seq, capacity)


def test_equal_sizes_give_an_exact_bound() -> None:
    seq = list("abcabcdabcd")
    bound = load_bound(seq, dict.fromkeys("abcd", 4000), [8000, 4000])
    assert bound.exact
    assert bound.capacity_models == 3
    assert bound.loads == belady_loads(seq, 3)


def brute_force_sized(seq: list[str], sizes: dict[str, int], capacity_mb: int) -> int:
    """Exhaustive minimum loads with real sizes: on a miss, keep any subset that fits."""
    best = [len(seq)]

    def go(i: int, cache: frozenset[str], loads: int) -> None:
        if loads >= best[0]:
            return
        if i == len(seq):
            best[0] = loads
            return
        m = seq[i]
        if m in cache:
            go(i + 1, cache, loads)
            return
        others = sorted(cache)
        for r in range(len(others), -1, -1):
            for keep in itertools.combinations(others, r):
                if sum(sizes[k] for k in keep) + sizes[m] <= capacity_mb:
                    go(i + 1, frozenset(keep) | {m}, loads + 1)

    go(0, frozenset(), 0)
    return best[0]


@pytest.mark.parametrize("seed", range(8))
def test_mixed_sizes_give_a_lower_bound_never_above_the_optimum(seed: int) -> None:
    rng = random.Random(seed)
    sizes = {"a": 1000, "b": 2000, "c": 6000, "d": 9000}
    seq = [rng.choice("abcd") for _ in range(10)]
    bound = load_bound(seq, sizes, [10000])
    assert not bound.exact
    assert bound.loads <= brute_force_sized(seq, sizes, 10000)


def test_mixed_sizes_bound_counts_only_models_that_can_fit_together() -> None:
    bound = load_bound(list("abcabc"), {"a": 1000, "b": 2000, "c": 20000}, [21000])
    assert bound.capacity_models == 2  # the two smallest fit together, not all three


def test_popularity_oracle_evicts_the_least_popular_cached_model() -> None:
    # a:4 b:2 c:1 d:1. Capacity 2: a b (a) c evicts b, (a) b evicts c, (a) d evicts b.
    assert popularity_oracle_loads(list("abacabad"), 2) == 5


@pytest.mark.parametrize("seed", range(6))
def test_popularity_oracle_is_never_below_belady(seed: int) -> None:
    rng = random.Random(seed)
    seq = [rng.choice("abcdefg") for _ in range(300)]
    for capacity in (1, 3, 5):
        assert popularity_oracle_loads(seq, capacity) >= belady_loads(seq, capacity)


def test_popularity_oracle_beats_lru_on_independent_zipf_requests() -> None:
    rng = random.Random(3)
    models = [f"m{i}" for i in range(16)]
    seq = rng.choices(models, weights=[1 / (i + 1) for i in range(16)], k=5000)
    capacity = 6
    lru: OrderedDict[str, None] = OrderedDict()
    lru_misses = 0
    for m in seq:
        if m in lru:
            lru.move_to_end(m)
            continue
        lru_misses += 1
        if len(lru) >= capacity:
            lru.popitem(last=False)
        lru[m] = None
    oracle = popularity_oracle_loads(seq, capacity)
    assert belady_loads(seq, capacity) < oracle < lru_misses


def test_equal_size_bound_carries_the_oracle_and_mixed_sizes_do_not() -> None:
    seq = list("abcabcdabcd")
    equal = load_bound(seq, dict.fromkeys("abcd", 4000), [8000, 4000])
    assert equal.oracle_loads == popularity_oracle_loads(seq, 3)
    mixed = load_bound(seq, {"a": 1000, "b": 2000, "c": 3000, "d": 4000}, [8000])
    assert mixed.oracle_loads is None
