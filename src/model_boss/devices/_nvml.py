"""GPUs as NVML sees them. No driver or no GPU means no devices, never an error."""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from model_boss.devices._device import Device

__all__ = ["GpuUsage", "NvmlProbe", "foreign_mb"]


@dataclass(frozen=True, slots=True)
class GpuUsage:
    """What NVML reports for one GPU right now (MiB)."""

    index: int
    total_mb: int
    used_mb: int
    per_process_mb: dict[int, int]


class NvmlProbe:
    """Thin, lazily initialised wrapper over ``pynvml`` (package ``nvidia-ml-py``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None
        self._ok: bool | None = None

    def _init(self) -> bool:
        with self._lock:
            if self._ok is None:
                try:
                    import pynvml

                    pynvml.nvmlInit()
                    self._nvml = pynvml
                    self._ok = True
                except Exception:  # no library, no driver, no GPU: all mean "no GPUs"
                    self._ok = False
            return self._ok

    @property
    def available(self) -> bool:
        return self._init()

    def devices(self) -> list[Device]:
        if not self._init():
            return []
        nv = self._nvml
        out: list[Device] = []
        for i in range(nv.nvmlDeviceGetCount()):
            handle = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(handle)
            name = nv.nvmlDeviceGetName(handle)
            uuid = nv.nvmlDeviceGetUUID(handle)
            out.append(
                Device(
                    index=i,
                    total_mb=int(mem.total) // (1024 * 1024),
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                )
            )
        return out

    def usage(self, index: int) -> GpuUsage | None:
        if not self._init():
            return None
        nv = self._nvml
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        mem = nv.nvmlDeviceGetMemoryInfo(handle)
        procs: dict[int, int] = {}
        getters = ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses")
        for getter in getters:
            try:
                for proc in getattr(nv, getter)(handle):
                    used = proc.usedGpuMemory or 0
                    procs[int(proc.pid)] = procs.get(int(proc.pid), 0) + int(used) // (1024 * 1024)
            except Exception:  # not supported on this GPU/driver
                continue
        mib = 1024 * 1024
        return GpuUsage(index, int(mem.total) // mib, int(mem.used) // mib, procs)

    def process_mb(self) -> dict[int, dict[int, int]]:
        """MiB used per process on every GPU, ``{gpu index: {pid: MiB}}`` (compute and
        graphics processes); empty without NVML."""
        if not self._init():
            return {}
        out: dict[int, dict[int, int]] = {}
        for index in range(self._nvml.nvmlDeviceGetCount()):
            usage = self.usage(index)
            if usage is not None:
                out[index] = dict(usage.per_process_mb)
        return out


def foreign_mb(usage: GpuUsage, lease_pids: Collection[int], leased_mb: int) -> int:
    """Memory in use on the GPU that no lease accounts for.

    ``lease_pids`` are the processes covered by this host's leases (holders and their
    descendants: a coordinator's lease covers the llama-server it started). Processes that
    hold a lease are covered by their leases; everything else NVML sees
    in use (other processes, the driver's own reservations) is foreign. The result is
    never less than ``used - leased`` counted from processes without a lease.
    """
    if not usage.per_process_mb:
        # NVML cannot list processes (common in containers): whatever is used beyond the
        # leases of this host is foreign.
        return max(0, usage.used_mb - leased_mb)
    unleased_procs = sum(mb for pid, mb in usage.per_process_mb.items() if pid not in lease_pids)
    leased_procs = sum(mb for pid, mb in usage.per_process_mb.items() if pid in lease_pids)
    # Memory NVML attributes to no listed process (driver, contexts of other containers).
    unattributed = max(0, usage.used_mb - unleased_procs - leased_procs)
    # A lease holder that uses more than it leased also eats foreign memory.
    overuse = max(0, leased_procs - leased_mb)
    return unleased_procs + unattributed + overuse
