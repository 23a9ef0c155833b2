from __future__ import annotations

from model_boss.sim import baseline_factory, simulate
from model_boss.sim._trace import SimModel, Trace, TraceRequest


def trace(models: list[tuple[str, int, float]], reqs: list[tuple[float, str]]) -> Trace:
    return Trace(
        tuple(TraceRequest(t, m, 10, "c", 0, 50) for t, m in reqs),  # 1 s of service each
        tuple(SimModel(mid, mb, load_s) for mid, mb, load_s in models),
        (24000,),
    )


def test_ollama_like_loads_one_cold_model_at_a_time() -> None:
    t = trace([("a", 4000, 10.0), ("b", 4000, 10.0)], [(0.0, "a"), (0.0, "b")])
    result = simulate(baseline_factory("ollama-like"), t)
    assert result.latency == [11.0, 21.0]  # b's load starts only when a's is done


def test_ollama_like_keeps_at_most_three_models_per_gpu() -> None:
    models = [(m, 1000, 1.0) for m in "abcd"]
    reqs = [(float(i * 10), m) for i, m in enumerate("abcda")]
    result = simulate(baseline_factory("ollama-like"), trace(models, reqs))
    # Memory would hold all four, but the cap of three evicts a for d; a reloads.
    assert result.load_sequence == ["a", "b", "c", "d", "a"]


def test_ollama_like_evicts_the_idle_model_whose_keep_alive_ends_first() -> None:
    models = [(m, 1000, 1.0) for m in "abcd"]
    reqs = [(0.0, "a"), (10.0, "b"), (20.0, "c"), (30.0, "a"), (40.0, "d"), (50.0, "b")]
    result = simulate(baseline_factory("ollama-like"), trace(models, reqs))
    # At 40 s, b's keep-alive (used at 10 s) ends first: b goes, and reloads at 50 s.
    assert result.load_sequence == ["a", "b", "c", "d", "b"]


def test_ollama_like_unloads_after_five_idle_minutes() -> None:
    t = trace([("a", 4000, 2.0)], [(0.0, "a"), (302.0, "a"), (700.0, "a")])
    result = simulate(baseline_factory("ollama-like"), t)
    assert result.loads == 2  # 302 s is within 300 s of the end (3 s), 700 s is not


def test_fifo_lru_keeps_models_until_memory_is_needed() -> None:
    t = trace([("a", 4000, 2.0)], [(0.0, "a"), (10_000.0, "a")])
    assert simulate(baseline_factory("fifo-lru"), t).loads == 1


def test_fixed_ttl_unloads_after_its_ttl() -> None:
    t = trace([("a", 4000, 2.0)], [(0.0, "a"), (200.0, "a")])
    assert simulate(baseline_factory("fixed-ttl"), t).loads == 2
