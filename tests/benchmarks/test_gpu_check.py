"""benchmarks/gpu_check.py: its audit on a faked NVML, and a real run on this machine,
which has no GPU (the script says so and checks the RAM pool instead)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


gc = load_gpu_check()
MIB = 1024 * 1024


@dataclass
class Proc:
    pid: int
    usedGpuMemory: int | None


class FakeNvml:
    """pynvml's calls that the check makes, over a table the test edits."""

    def __init__(self, total_mb: int) -> None:
        self.total_mb = total_mb
        self.compute: dict[int, int] = {}
        self.graphics: dict[int, int] = {}

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return type("Mem", (), {"total": self.total_mb * MIB})()

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Proc]:
        return [Proc(pid, mb * MIB) for pid, mb in self.compute.items()]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[Proc]:
        return [Proc(pid, mb * MIB) for pid, mb in self.graphics.items()]


COORDINATOR, LLAMA_A, LLAMA_B, KIT, STRANGER = 100, 201, 202, 300, 400
SLOTS = [
    {"slot_id": 1, "model": "a", "lease_tokens": [11, 14], "backend": {"pid": LLAMA_A}},
    {"slot_id": 2, "model": "b", "lease_tokens": [12], "backend": {"pid": LLAMA_B}},
    {"slot_id": 3, "model": "c", "lease_tokens": [15], "backend": None},  # still loading
]
LEASES = [
    {
        "pool": "h:gpu0",
        "token": 11,
        "mb": 1000,
        "pid": COORDINATOR,
        "holder": "co",
        "model_id": "a",
    },
    {"pool": "h:gpu0", "token": 14, "mb": 200, "pid": COORDINATOR, "holder": "co", "model_id": "a"},
    {"pool": "h:gpu0", "token": 12, "mb": 800, "pid": COORDINATOR, "holder": "co", "model_id": "b"},
    {"pool": "h:gpu0", "token": 15, "mb": 900, "pid": COORDINATOR, "holder": "co", "model_id": "c"},
    {"pool": "h:gpu0", "token": 13, "mb": 5000, "pid": KIT, "holder": "kit", "model_id": "blk"},
    {"pool": "h:gpu1", "token": 3, "mb": 7000, "pid": STRANGER, "holder": "x", "model_id": None},
]


def test_each_lease_covers_the_process_that_uses_the_memory() -> None:
    leased, names = gc.leases_by_pid(SLOTS, LEASES, "h:gpu0")
    # A slot's leases (a grown one too) cover its backend, not the coordinator that holds them.
    assert leased == {LLAMA_A: 1200, LLAMA_B: 800, KIT: 5000}
    assert names[LLAMA_A] == "a#1"
    assert names[KIT] == "blk"


def test_nvml_usage_sums_compute_and_graphics_per_process() -> None:
    nvml = FakeNvml(8000)
    nvml.compute = {LLAMA_A: 900, KIT: 4000}
    nvml.graphics = {LLAMA_A: 100}
    usage, total = gc.nvml_usage(nvml, 0)
    assert total == 8000
    assert usage() == {LLAMA_A: 1000, KIT: 4000}


def samples_from(nvml: FakeNvml, steps: list[dict[int, int]], dt: float) -> list[Any]:
    usage, _ = gc.nvml_usage(nvml, 0)
    leased, names = gc.leases_by_pid(SLOTS, LEASES, "h:gpu0")
    out = []
    for i, step in enumerate(steps):
        nvml.compute = step
        out.append(gc.Sample(i * dt, usage(), leased, names))
    return out


def test_audit_counts_an_excess_only_once_it_outlasts_the_grace_period() -> None:
    nvml = FakeNvml(8000)
    brief = [{LLAMA_A: 1500, KIT: 5000}] * 4 + [{LLAMA_A: 1100, KIT: 5000}]  # 1 s over
    result = gc.audit(samples_from(nvml, brief, 0.25), 8000, grace_s=2.0)
    assert result.max_excess_mb == 300
    assert result.max_excess_by == "a#1"
    assert result.over_lease_past_grace == 0
    assert result.overcommit_instants == 0

    lasting = [{LLAMA_A: 1500, KIT: 5000}] * 12  # 3 s over
    result = gc.audit(samples_from(nvml, lasting, 0.25), 8000, grace_s=2.0)
    assert result.over_lease_past_grace == 3  # the samples at 2.25, 2.5 and 2.75 s
    assert result.per_process["a#1"] == {
        "max_used_mb": 1500,
        "max_excess_mb": 300,
        "leased_mb": 1200,
    }


def test_audit_sees_an_over_commit_of_the_device() -> None:
    nvml = FakeNvml(8000)
    # Each within its lease plus tolerance, together above the device: 1250 + 850 + 6000.
    steps = [{LLAMA_A: 1250, LLAMA_B: 850, KIT: 6000, STRANGER: 50}]
    result = gc.audit(samples_from(nvml, steps, 0.25), 8000, grace_s=10.0)
    assert result.overcommit_instants == 1
    assert result.max_used_total_mb == 8100  # the stranger holds no lease: not counted
    assert result.max_unleased_mb == 50  # ...but seen


@pytest.mark.slow
def test_metric_sums_the_samples_of_a_name_with_the_labels_asked_for() -> None:
    text = "\n".join(
        [
            "# TYPE model_boss_loads_total counter",
            "model_boss_loads_total 3.0",
            "# TYPE model_boss_evictions_total counter",
            'model_boss_evictions_total{reason="room"} 2.0',
            'model_boss_evictions_total{reason="preemption"} 1.0',
            'model_boss_evictions_total{reason="idle"} 5.0',
            "# TYPE model_boss_load_duration_seconds histogram",
            'model_boss_load_duration_seconds_bucket{le="+Inf"} 3.0',
            "model_boss_load_duration_seconds_count 3.0",
            "model_boss_load_duration_seconds_sum 1.5",
        ]
    )
    assert gc.metric(text, "model_boss_loads_total") == 3
    assert gc.metric(text, "model_boss_evictions_total") == 8
    assert gc.metric(text, "model_boss_evictions_total", reason="room") == 2
    assert gc.metric(text, "model_boss_load_duration_seconds_sum") == 1.5
    assert gc.metric(text, "model_boss_load_duration_seconds_count") == 3
    assert gc.metric(text, "model_boss_loads") == 0  # a prefix is not the name


def test_runs_here_says_there_is_no_gpu_and_checks_the_ram_pool(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_check.py"),
            "--seconds",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == json.loads(out.read_text())
    assert report["gpu"] is None
    assert "no NVIDIA GPU found" in report["note"]
    assert report["ok"] is True
    audit = report["audit"]
    assert audit["samples"] > 10
    assert audit["overcommit_instants"] == 0
    assert audit["over_lease_past_grace"] == 0
    seen = {name.split("#")[0] for name in audit["per_process"]}
    assert seen == {"smol-2k", "smol-8k", "smol-32k", "kit-block"}
    assert all(row["max_used_mb"] > 0 for row in audit["per_process"].values())
    assert set(report["load_s"]) == {"smol-2k", "smol-8k", "smol-32k"}
    assert all(isinstance(s, float) for s in report["load_s"].values()), report["load_s"]
    assert report["mixed"]["answers_by_status"].get("200", 0) > 0
    assert report["tokens_per_s"]["coordinator"] > 0
    coordinator = report["coordinator"]
    assert coordinator["loads"] >= 3  # read from model_boss_loads_total
    assert coordinator["load_seconds_mean"] > 0
    assert report["tokens_per_s"]["direct"] > 0
