"""The lease benchmark runs end to end and prints one JSON object last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_leases_benchmark_prints_its_figures_as_json() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "leases.py"),
            "--seconds",
            "0.3",
            "--repeat",
            "1",
            "--procs",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["benchmark"] == "leases"
    assert {(r["store"], r["procs"]) for r in last["rows"]} == {
        ("redis", 1),
        ("redis-py", 1),
        ("sqlite", 1),
    }
    for row in last["rows"]:
        assert row["ops_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["baseline_ops_per_s"] > 0
