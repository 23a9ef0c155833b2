"""What memory pools exist: GPUs (NVML or declared), and the host RAM.

This layer knows nothing about leases.
"""

from __future__ import annotations

from model_boss.devices._cache import CacheManager, CleanupMode, CleanupReport
from model_boss.devices._device import (
    DEVICES_ENV,
    Device,
    declared_devices,
    gpu_pool_name,
    hostname,
    ram_pool_name,
)
from model_boss.devices._nvml import GpuUsage, NvmlProbe, foreign_mb
from model_boss.devices._processes import ProcessMemory, ProcessMonitor
from model_boss.devices._ram import (
    MemoryAnalysis,
    MemoryAnalyzer,
    MemoryPressure,
    MemorySnapshot,
    read_meminfo,
)

__all__ = [
    "DEVICES_ENV",
    "CacheManager",
    "CleanupMode",
    "CleanupReport",
    "Device",
    "GpuUsage",
    "MemoryAnalysis",
    "MemoryAnalyzer",
    "MemoryPressure",
    "MemorySnapshot",
    "NvmlProbe",
    "ProcessMemory",
    "ProcessMonitor",
    "declared_devices",
    "discover_gpus",
    "foreign_mb",
    "gpu_pool_name",
    "host_ram_mb",
    "hostname",
    "ram_pool_name",
    "read_meminfo",
]


def discover_gpus(probe: NvmlProbe | None = None) -> list[Device]:
    """Declared devices (``MODEL_BOSS_DEVICES``) if any, else what NVML finds (maybe none)."""
    declared = declared_devices()
    if declared is not None:
        return declared
    return (probe or NvmlProbe()).devices()


def host_ram_mb() -> int:
    """Total host RAM in MiB, from /proc/meminfo."""
    return read_meminfo().get("MemTotal", 0) // 1024
