"""benchmarks/sched_ablation.py runs and reports every variant against both references."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sched_ablation.py"


def test_a_small_run_reports_each_variant_against_bound_and_oracle() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--requests", "800"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout.strip().splitlines()[-1])["rows"]
    variants = {
        "production",
        "true popularity",
        "no priority weight",
        "drain serving",
        "all three",
        "no idle unloading",
    }
    assert {r["variant"] for r in rows} == variants
    assert {r["rate_per_s"] for r in rows} == {0.25, 1.0, 2.0}
    for r in rows:
        assert r["bound_exact"] is True
        assert 0 < r["bound"] <= r["oracle"]
        assert r["over_bound"] == round(r["loads"] / r["bound"], 3)
        assert 0.0 <= r["slo10"] <= 1.0


def test_a_mixed_size_setting_has_no_oracle() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--json",
            "--requests",
            "300",
            "--setting",
            "16 models, 1x24GB",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout.strip().splitlines()[-1])["rows"]
    assert {r["rate_per_s"] for r in rows} == {0.25}
    assert all(r["bound_exact"] is False and r["oracle"] is None for r in rows)
    assert all(r["over_oracle"] is None for r in rows)
