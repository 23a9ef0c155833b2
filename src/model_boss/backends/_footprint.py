"""Measure what a backend's process tree really uses: RSS from psutil, VRAM from NVML."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import psutil

from model_boss.backends._protocol import Footprint

__all__ = ["measure_process_tree"]

_MB = 1024 * 1024


@functools.cache
def _nvml() -> Any | None:
    """The initialised pynvml module, or None on a machine without an NVIDIA driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver, no device: there is no VRAM to count
        return None
    return pynvml


def _vram_by_gpu(pids: set[int]) -> dict[int, int]:
    nvml = _nvml()
    if nvml is None:
        return {}
    used: dict[int, int] = {}
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        processes = [
            *nvml.nvmlDeviceGetComputeRunningProcesses(handle),
            *nvml.nvmlDeviceGetGraphicsRunningProcesses(handle),
        ]
        total = sum(p.usedGpuMemory or 0 for p in processes if p.pid in pids)
        if total:
            used[index] = total // _MB
    return used


def measure_process_tree(pid: int) -> Footprint:
    """RAM (RSS) and per-GPU VRAM of ``pid`` and all its descendants."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return Footprint()
    rss = 0
    pids: set[int] = set()
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            rss += process.memory_info().rss
            pids.add(process.pid)
    return Footprint(ram_mb=rss // _MB, vram_mb=_vram_by_gpu(pids))
