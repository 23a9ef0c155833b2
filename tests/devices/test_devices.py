from __future__ import annotations

from pathlib import Path

import pytest

from model_boss import ConfigError, Device
from model_boss.devices import (
    GpuUsage,
    MemoryAnalyzer,
    MemoryPressure,
    NvmlProbe,
    ProcessMonitor,
    declared_devices,
    discover_gpus,
    foreign_mb,
    read_meminfo,
)

MEMINFO = """MemTotal:       16000000 kB
MemFree:         1000000 kB
MemAvailable:    {avail} kB
Buffers:          100000 kB
Cached:          2000000 kB
SwapTotal:       {swap_total} kB
SwapFree:        {swap_free} kB
"""


def meminfo(tmp_path: Path, avail: int, swap_total: int = 0, swap_free: int = 0) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO.format(avail=avail, swap_total=swap_total, swap_free=swap_free))
    return path


def test_declared_devices_parse_sizes_and_names() -> None:
    assert declared_devices("24000, 80000:h100") == [
        Device(0, 24000, "declared0"),
        Device(1, 80000, "h100"),
    ]
    assert declared_devices("") is None


@pytest.mark.parametrize("spec", ["abc", "24000,-1", "0"])
def test_bad_declared_devices_name_the_variable(spec: str) -> None:
    with pytest.raises(ConfigError, match="MODEL_BOSS_DEVICES"):
        declared_devices(spec)


def test_declared_devices_win_over_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_BOSS_DEVICES", "1000")
    assert discover_gpus() == [Device(0, 1000, "declared0")]


def test_no_driver_means_no_gpus_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_BOSS_DEVICES", raising=False)
    probe = NvmlProbe()
    # This machine has no NVIDIA driver: NVML cannot initialise.
    assert probe.available is False
    assert probe.devices() == []
    assert probe.usage(0) is None


@pytest.mark.parametrize("bad", [{"index": -1, "total_mb": 1}, {"index": 0, "total_mb": 0}])
def test_device_rejects_nonsense(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="device"):
        Device(bad["index"], bad["total_mb"])


def test_foreign_memory_counts_processes_without_a_lease() -> None:
    usage = GpuUsage(0, 24000, 13000, {10: 8000, 20: 3000})
    # pid 10 holds an 8000 MiB lease; pid 20 has none; 2000 MiB belong to nobody listed.
    assert foreign_mb(usage, {10}, 8000) == 3000 + 2000
    # A holder using more than it leased eats into foreign memory too.
    assert foreign_mb(usage, {10}, 6000) == 3000 + 2000 + 2000
    assert foreign_mb(GpuUsage(0, 24000, 0, {}), set(), 0) == 0


def test_meminfo_is_parsed_in_kib(tmp_path: Path) -> None:
    info = read_meminfo(meminfo(tmp_path, avail=8_000_000))
    assert info["MemTotal"] == 16_000_000
    assert info["MemAvailable"] == 8_000_000


@pytest.mark.parametrize(
    ("avail_kb", "expected"),
    [
        (8_000_000, MemoryPressure.LOW),
        (3_000_000, MemoryPressure.MEDIUM),
        (1_600_000, MemoryPressure.HIGH),
        (500_000, MemoryPressure.CRITICAL),
    ],
)
def test_pressure_follows_available_fraction(
    tmp_path: Path, avail_kb: int, expected: MemoryPressure
) -> None:
    analysis = MemoryAnalyzer(meminfo=meminfo(tmp_path, avail_kb)).analyze()
    assert analysis.pressure is expected
    assert analysis.snapshot.total_mb == 15625


def test_swapping_raises_pressure_one_level(tmp_path: Path) -> None:
    path = meminfo(tmp_path, 3_000_000, swap_total=1_000_000, swap_free=500_000)
    assert MemoryAnalyzer(meminfo=path).analyze().pressure is MemoryPressure.HIGH


def test_process_monitor_sees_this_process() -> None:
    import os

    me = ProcessMonitor().process(os.getpid())
    assert me is not None
    assert me.rss_mb > 0
    assert ProcessMonitor().process(2**22 + 999) is None
    assert len(ProcessMonitor().top(3)) == 3


def test_without_per_process_data_only_memory_beyond_the_leases_is_foreign() -> None:
    assert foreign_mb(GpuUsage(0, 24000, 10000, {}), set(), 8000) == 2000
    assert foreign_mb(GpuUsage(0, 24000, 5000, {}), set(), 8000) == 0
