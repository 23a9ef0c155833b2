from __future__ import annotations

import math
import os
import subprocess
import sys

from model_boss.sim import (
    ServiceModel,
    TraceRequest,
    TraceSpec,
    baseline_factory,
    generate_trace,
    make_models,
    scheduler_factory,
    simulate,
)
from model_boss.sim._trace import SimModel, Trace


def test_simulation_is_deterministic_for_a_seed() -> None:
    models = make_models(10, [2000, 6000, 9000])
    runs = []
    for _ in range(2):
        trace = generate_trace(TraceSpec(2000, 1.0, cv=2.0, seed=5), models, (24000,))
        r = simulate(scheduler_factory(), trace)
        runs.append((r.latency, r.loads, r.load_sequence, r.events))
    assert runs[0] == runs[1]
    other = simulate(
        scheduler_factory(), generate_trace(TraceSpec(2000, 1.0, cv=2.0, seed=6), models, (24000,))
    )
    assert other.latency != runs[0][0]


def test_service_time_comes_from_prompt_and_output_tokens() -> None:
    svc = ServiceModel(prefill_tps=1000.0, decode_tps=50.0)
    assert svc.service_s(TraceRequest(0.0, "m", 10, "c", 500, 100)) == 0.5 + 2.0


def one_model_trace(load_s: float, times: list[float]) -> Trace:
    reqs = tuple(TraceRequest(t, "m", 10, "c", 0, 50) for t in times)  # 1 s each
    return Trace(reqs, (SimModel("m", 4000, load_s),), (24000,))


def test_cold_request_pays_the_load_time_and_warm_ones_do_not() -> None:
    result = simulate(scheduler_factory(), one_model_trace(5.0, [0.0, 10.0]))
    assert result.latency == [6.0, 1.0]
    assert result.loads == 1
    assert result.mb_loaded == 4000


def test_baseline_and_scheduler_see_the_same_trace() -> None:
    trace = one_model_trace(5.0, [0.0, 10.0, 400.0])
    ours = simulate(scheduler_factory(), trace)
    base = simulate(baseline_factory("ollama-like"), trace)
    assert ours.warm == base.warm
    # Both unload after 5 idle minutes, so the third request is cold for both.
    assert ours.loads == base.loads == 2
    assert not any(math.isnan(x) for x in ours.latency + base.latency)


_DIGEST = """
import hashlib
from model_boss.sim import *
models = make_models(20, [1000, 6000, 30000], seed=3, replica_max=2)
trace = generate_trace(TraceSpec(1500, 2.0, cv=2.0, seed=9), models, (24000, 24000))
runs = [simulate(f, trace) for f in (scheduler_factory(), baseline_factory("ollama-like"))]
print(hashlib.sha256(repr([(r.latency, r.load_sequence) for r in runs]).encode()).hexdigest())
"""


def test_simulation_does_not_depend_on_the_hash_seed() -> None:
    digests = {
        subprocess.run(
            [sys.executable, "-c", _DIGEST],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1
