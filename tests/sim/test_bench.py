from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from model_boss.sim import SETTINGS, Setting, goodput, make_models, scale_check, scheduler_factory
from model_boss.sim._bench import add_arguments, run_from_args


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, dict[str, object]]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run_from_args(parser.parse_args(list(argv))) == 0
    out = capsys.readouterr().out
    return out, json.loads(out.strip().splitlines()[-1])


def test_bench_prints_a_table_and_one_json_object_last(capsys: pytest.CaptureFixture[str]) -> None:
    setting = next(iter(SETTINGS))
    out, report = run(capsys, "--setting", setting, "--requests", "400", "--no-goodput", "--json")
    rows = report["rows"]
    assert isinstance(rows, list)
    assert {r["policy"] for r in rows} == {"model-boss", "ollama-like", "fifo-lru", "fixed-ttl"}
    for r in rows:
        assert set(r["slo_attainment"]) == {"5", "10", "20"}
        assert set(r["p99_s"]) == {"urgent", "high", "normal", "low", "batch"}
    assert out.splitlines()[0].startswith("setting")


def test_bench_reports_the_popularity_oracle_where_the_bound_is_exact(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setting = "equal sizes, 16x4GB, 1x24GB"
    _, report = run(capsys, "--setting", setting, "--requests", "600", "--no-goodput", "--json")
    targets = report["targets"]
    assert isinstance(targets, dict)
    t = targets[setting]
    rows = [r for r in report["rows"] if r["policy"] == "model-boss"]  # type: ignore[attr-defined]
    (ours,) = rows
    assert ours["load_bound"] <= ours["oracle_loads"]
    assert t["popularity_oracle_over_exact_bound"] == round(
        ours["oracle_loads"] / ours["load_bound"], 3
    )
    assert t["loads_over_popularity_oracle"] == round(ours["loads"] / ours["oracle_loads"], 3)


def test_bench_replays_a_given_trace(
    capsys: pytest.CaptureFixture[str], trace_files: tuple[Path, Path]
) -> None:
    trace_path, models_path = trace_files
    _, report = run(
        capsys,
        "--trace",
        str(trace_path),
        "--models",
        str(models_path),
        "--gpus",
        "16000,8000",
        "--json",
        "--goodput-requests",
        "60",
    )
    rows = report["rows"]
    assert isinstance(rows, list)
    assert all(r["requests"] == 60 for r in rows)
    ours = next(r for r in rows if r["policy"] == "model-boss")
    assert ours["goodput_per_s"] is not None


def test_goodput_is_a_rate_the_policy_sustains() -> None:
    setting = Setting("tiny", make_models(4, [4000]), (24000,), 0.5)
    rate = goodput(scheduler_factory(), setting, 300, seed=1, steps=2)
    assert rate > 0.0


def test_cli_registers_bench_sched(capsys: pytest.CaptureFixture[str]) -> None:
    from model_boss.cli import _bench

    parser = argparse.ArgumentParser()
    _bench.register(parser.add_subparsers(dest="group"))
    args = parser.parse_args(
        ["bench", "sched", "--setting", next(iter(SETTINGS)), "--requests", "200", "--no-goodput"]
    )
    assert args.handler(args) == 0
    assert "model-boss" in capsys.readouterr().out


def test_scale_check_serves_every_request_and_reports_cpu_seconds() -> None:
    # The timing itself (1M requests over 1000 models in < 60 s of one core) is a benchmark:
    # `python benchmarks/sched.py --scale`; here, that the same workload runs and is served.
    result = scale_check(20_000, 200)
    assert result["requests"] == 20_000
    assert result["models"] == 200
    assert result["seconds"] > 0
    assert result["events"] > 2 * 20_000  # an arrival and a completion each, then the loads
    assert result["loads"] > 0
    assert result["slo10_attainment"] > 0.9


def test_bench_replays_a_trace_whose_urgent_requests_take_no_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Warm embedding calls with no output: model-boss's urgent p99 rounds to 0.
    models = [
        {"id": "chat", "size_mb": 8000, "load_s": 6.0},
        {"id": "embed", "size_mb": 1000, "load_s": 1.5, "pin": True},
    ]
    lines = [{"t": 0.0, "model": "chat", "prompt_tokens": 200, "output_tokens": 50}]
    lines += [
        {
            "t": 100.0 + i,
            "model": "embed",
            "priority": "urgent",
            "prompt_tokens": 8,
            "output_tokens": 0,
        }
        for i in range(20)
    ]
    (tmp_path / "m.json").write_text(json.dumps(models))
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    _, report = run(
        capsys,
        "--trace",
        str(tmp_path / "r.jsonl"),
        "--models",
        str(tmp_path / "m.json"),
        "--no-goodput",
        "--json",
    )
    ours = next(r for r in report["rows"] if r["policy"] == "model-boss")  # type: ignore[attr-defined]
    assert ours["p99_s"]["urgent"] == 0.0
    targets = report["targets"]
    assert isinstance(targets, dict)
    (t,) = targets.values()
    assert t["urgent_p99_gain_vs_ollama"] is None or t["urgent_p99_gain_vs_ollama"] > 0
