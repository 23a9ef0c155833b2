"""Measure what a backend's process tree really uses: PSS from psutil, VRAM from NVML.

The tree is the process, its descendants, and (when it leads its own process group, as
every supervised backend does) the other members of that group, so that a grandchild
that was re-parented still counts.

* RAM: the proportional set size (``/proc/<pid>/smaps_rollup``: shared pages are split
  between the processes that map them, so the tree's sum counts a page once and a file
  mapped by many processes is not charged to each in full). Where PSS cannot be read, the
  unique set size, then the resident set size.
* VRAM: what NVML attributes to each pid (compute and graphics processes), summed over
  the tree, per physical GPU index. The source is a :class:`GpuProcessProbe`, so that
  tests can fake NVML; the default is a shared :class:`~model_boss.devices.NvmlProbe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Mapping
from typing import Protocol

import psutil

from model_boss.backends._protocol import Backend, BackendState, Footprint
from model_boss.devices import NvmlProbe

__all__ = [
    "GpuProcessProbe",
    "default_gpu_probe",
    "measure_backend",
    "measure_process_tree",
    "process_tree",
    "ram_bytes",
]

_MB = 1024 * 1024


class GpuProcessProbe(Protocol):
    """Where per-process GPU memory comes from (NVML, or a fake in tests)."""

    def process_mb(self) -> Mapping[int, Mapping[int, int]]:
        """MiB used per process on each GPU: ``{gpu index: {pid: MiB}}``."""
        ...


@functools.cache
def default_gpu_probe() -> GpuProcessProbe:
    """The process-wide NVML probe (no driver or no GPU: it reports nothing)."""
    return NvmlProbe()


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid``, its descendants, and the members of its process group if it leads one."""
    try:
        root = psutil.Process(pid)
        tree = {p.pid: p for p in [root, *root.children(recursive=True)]}
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []
    except psutil.AccessDenied:
        return [psutil.Process(pid)] if psutil.pid_exists(pid) else []
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            for other in psutil.pids():
                if other in tree:
                    continue
                with contextlib.suppress(OSError, psutil.Error):
                    if os.getpgid(other) == pid:
                        tree[other] = psutil.Process(other)
    return list(tree.values())


def ram_bytes(process: psutil.Process) -> int:
    """PSS of one process; USS, then RSS where PSS cannot be read; 0 once it is gone."""
    try:
        full = process.memory_full_info()
    except (psutil.AccessDenied, NotImplementedError, OSError):
        pass
    except psutil.NoSuchProcess:
        return 0
    else:
        pss = getattr(full, "pss", None)
        if pss is not None:
            return int(pss)
        uss = getattr(full, "uss", None)
        if uss is not None:
            return int(uss)
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def measure_process_tree(pid: int, *, gpu: GpuProcessProbe | None = None) -> Footprint:
    """RAM (PSS) and per-GPU VRAM of ``pid``'s process tree (see the module docstring)."""
    tree = process_tree(pid)
    if not tree:
        return Footprint()
    ram = sum(ram_bytes(process) for process in tree)
    pids = {process.pid for process in tree}
    probe = default_gpu_probe() if gpu is None else gpu
    vram: dict[int, int] = {}
    try:
        per_gpu = probe.process_mb()
    except Exception:  # NVML errors (a GPU fell off the bus...) must not stop the watch
        per_gpu = {}
    for index, per_pid in per_gpu.items():
        used = sum(mb for p, mb in per_pid.items() if p in pids)
        if used:
            vram[index] = used
    return Footprint(ram_mb=ram // _MB, vram_mb=vram)


async def measure_backend(backend: Backend, *, gpu: GpuProcessProbe | None = None) -> Footprint:
    """What ``backend`` uses now: its process tree while it runs a process (``pid``),
    measured with ``gpu`` as the NVML source; otherwise what the backend reports."""
    pid = getattr(backend, "pid", None)
    if isinstance(pid, int) and backend.state is BackendState.READY:
        return await asyncio.to_thread(measure_process_tree, pid, gpu=gpu)
    return await backend.footprint()
