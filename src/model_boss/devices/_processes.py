"""Per-process memory, via psutil."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

__all__ = ["ProcessMemory", "ProcessMonitor"]


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    pid: int
    name: str
    rss_mb: int
    vms_mb: int
    percent: float


class ProcessMonitor:
    """Memory of the processes on this host."""

    def process(self, pid: int) -> ProcessMemory | None:
        try:
            return _describe(psutil.Process(pid))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def top(self, n: int = 10) -> list[ProcessMemory]:
        """The ``n`` processes using the most resident memory."""
        found: list[ProcessMemory] = []
        for proc in psutil.process_iter():
            try:
                found.append(_describe(proc))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        found.sort(key=lambda p: p.rss_mb, reverse=True)
        return found[:n]

    @staticmethod
    def alive(pid: int) -> bool:
        return psutil.pid_exists(pid)


def _describe(proc: psutil.Process) -> ProcessMemory:
    with proc.oneshot():
        mem = proc.memory_info()
        return ProcessMemory(
            pid=proc.pid,
            name=proc.name(),
            rss_mb=mem.rss // (1024 * 1024),
            vms_mb=mem.vms // (1024 * 1024),
            percent=round(proc.memory_percent(), 2),
        )
