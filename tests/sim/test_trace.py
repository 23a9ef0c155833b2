from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path

import pytest

from model_boss.sim import TraceSpec, generate_trace, load_models, load_trace, make_models


def test_same_seed_gives_the_same_trace_and_another_seed_another() -> None:
    models = make_models(8, [1000, 2000])
    a = generate_trace(TraceSpec(500, 1.0, seed=3), models, (24000,))
    b = generate_trace(TraceSpec(500, 1.0, seed=3), models, (24000,))
    c = generate_trace(TraceSpec(500, 1.0, seed=4), models, (24000,))
    assert a == b
    assert a != c


@pytest.mark.parametrize("cv", [1.0, 4.0])
def test_inter_arrivals_have_the_requested_rate_and_cv(cv: float) -> None:
    models = make_models(4, [1000])
    trace = generate_trace(TraceSpec(40_000, 2.0, cv=cv, seed=1), models, (24000,))
    times = [r.t for r in trace.requests]
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.5, rel=0.1)
    assert statistics.pstdev(gaps) / mean == pytest.approx(cv, rel=0.15)


def test_model_popularity_follows_zipf() -> None:
    models = make_models(10, [1000])
    trace = generate_trace(TraceSpec(50_000, 1.0, zipf_alpha=1.0, seed=1), models, (24000,))
    counts = Counter(r.model for r in trace.requests)
    first, second = counts[models[0].id], counts[models[1].id]
    assert first / second == pytest.approx(2.0, rel=0.1)  # 1/1 vs 1/2
    harmonic = sum(1 / k for k in range(1, 11))
    assert first / 50_000 == pytest.approx(1 / harmonic, rel=0.05)


def test_generated_load_time_is_startup_plus_size_over_bandwidth() -> None:
    (m,) = make_models(1, [4000], startup_s=2.0, disk_mb_per_s=2000.0)
    assert math.isclose(m.load_s, 4.0)


def test_trace_files_load(trace_files: tuple[Path, Path]) -> None:
    trace_path, models_path = trace_files
    models = load_models(models_path)
    assert [m.id for m in models] == ["chat", "code", "embed"]
    assert models[0].pin
    trace = load_trace(trace_path, models, (24000,))
    assert len(trace.requests) == 60
    assert trace.requests[0].priority == 1  # "urgent"


def test_trace_with_unknown_model_names_the_line(tmp_path: Path) -> None:
    models_path = tmp_path / "models.json"
    models_path.write_text('[{"id": "a", "size_mb": 1000, "load_s": 1}]')
    trace_path = tmp_path / "t.jsonl"
    trace_path.write_text('{"t": 0, "model": "a"}\n{"t": 1, "model": "zzz"}\n')
    with pytest.raises(ValueError, match=r"t\.jsonl:2: unknown model 'zzz'"):
        load_trace(trace_path, load_models(models_path), (24000,))


def test_replayed_trace_times_may_have_any_origin(tmp_path: Path) -> None:
    models_path = tmp_path / "models.json"
    models_path.write_text('[{"id": "a", "size_mb": 1000, "load_s": 1}]')
    lines = [f'{{"t": {1_700_000_000 + 2 * i}, "model": "a"}}' for i in range(100)]
    trace_path = tmp_path / "t.jsonl"
    trace_path.write_text("\n".join(reversed(lines)) + "\n")
    trace = load_trace(trace_path, load_models(models_path), (24000,))
    assert trace.requests[0].t == 0.0
    assert trace.duration_s == 198.0  # 100 requests 2 s apart: 0.5 requests/s
    assert trace.scaled(0.5).requests[1].t == 1.0
