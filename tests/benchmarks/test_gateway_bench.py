"""benchmarks/gateway.py runs end to end (mock upstream, ``model-boss serve``, load) and
prints its table and one JSON object last."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gateway.py"
TINY = ["--rate", "50", "--seconds", "0.5", "--rounds", "1", "--max-seconds", "0.5"]

pytestmark = pytest.mark.slow


def test_a_tiny_run_prints_a_table_and_one_json_object_last() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", *TINY, "--concurrency", "2", "--warmup", "5"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert any(line.startswith("chat    coordinator") for line in lines)
    result = json.loads(lines[-1])

    assert result["benchmark"] == "gateway"
    assert result["config"]["rate"] == 50.0
    assert result["config"]["spacing"] == "fixed"
    assert len(result["load_average"]["before"]) == 3
    assert result["targets"] == {"added_p50_ms": 1.0, "added_p99_ms": 3.0}
    assert isinstance(result["targets_met"], bool)
    assert isinstance(result["busy_machine"], bool)
    assert set(result["modes"]) == {"chat", "stream"}
    for mode in result["modes"].values():
        for path in ("direct", "coordinator"):
            stats = mode[path]
            assert stats["errors"] == 0, stats["first_error"]
            assert stats["requests"] == 25  # 50/s for 0.5 s
            assert 0 < stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]
            assert set(stats["cpu_us_per_request"]) == {"upstream", "coordinator"}
            assert mode["max_rate"][path] > 0
        assert math.isclose(
            mode["added_p50_ms"],
            mode["coordinator"]["p50_ms"] - mode["direct"]["p50_ms"],
            abs_tol=0.002,
        )
        assert mode["max_rate"]["errors"] == 0
        assert isinstance(mode["targets_met"], bool)
