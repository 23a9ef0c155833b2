"""The host RAM: totals from /proc/meminfo and a pressure analysis (the seeds' ram-boss)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MemoryAnalysis", "MemoryAnalyzer", "MemoryPressure", "MemorySnapshot", "read_meminfo"]

MEMINFO = Path("/proc/meminfo")


def read_meminfo(path: Path = MEMINFO) -> dict[str, int]:
    """Parse /proc/meminfo into KiB values keyed by field name."""
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0])
    return out


class MemoryPressure(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """Host memory in MiB."""

    total_mb: int
    available_mb: int
    free_mb: int
    cached_mb: int
    buffers_mb: int
    swap_total_mb: int
    swap_free_mb: int

    @property
    def used_mb(self) -> int:
        return self.total_mb - self.available_mb

    @property
    def available_fraction(self) -> float:
        return self.available_mb / self.total_mb if self.total_mb else 0.0


@dataclass(frozen=True, slots=True)
class MemoryAnalysis:
    snapshot: MemorySnapshot
    pressure: MemoryPressure
    reclaimable_mb: int
    recommendation: str


class MemoryAnalyzer:
    """Classify memory pressure from the fraction of RAM still available.

    Defaults: available >= 25% is low pressure, >= 15% medium, >= 5% high, else critical.
    Swap in use raises the level by one when available memory is already under 25%.
    """

    def __init__(
        self,
        *,
        meminfo: Path = MEMINFO,
        medium_below: float = 0.25,
        high_below: float = 0.15,
        critical_below: float = 0.05,
    ) -> None:
        if not 0 < critical_below < high_below < medium_below < 1:
            raise ValueError("thresholds must satisfy 0 < critical < high < medium < 1")
        self._meminfo = meminfo
        self._medium = medium_below
        self._high = high_below
        self._critical = critical_below

    def snapshot(self) -> MemorySnapshot:
        info = read_meminfo(self._meminfo)
        total = info.get("MemTotal", 0)
        free = info.get("MemFree", 0)
        available = info.get("MemAvailable", free + info.get("Cached", 0))
        return MemorySnapshot(
            total_mb=total // 1024,
            available_mb=available // 1024,
            free_mb=free // 1024,
            cached_mb=info.get("Cached", 0) // 1024,
            buffers_mb=info.get("Buffers", 0) // 1024,
            swap_total_mb=info.get("SwapTotal", 0) // 1024,
            swap_free_mb=info.get("SwapFree", 0) // 1024,
        )

    def pressure_of(self, snap: MemorySnapshot) -> MemoryPressure:
        frac = snap.available_fraction
        levels = [MemoryPressure.LOW, MemoryPressure.MEDIUM, MemoryPressure.HIGH]
        if frac < self._critical:
            return MemoryPressure.CRITICAL
        level = 0 if frac >= self._medium else 1 if frac >= self._high else 2
        swapping = snap.swap_total_mb > 0 and snap.swap_free_mb < snap.swap_total_mb
        if swapping and level > 0:
            level += 1
        return levels[level] if level < 3 else MemoryPressure.CRITICAL

    def analyze(self) -> MemoryAnalysis:
        snap = self.snapshot()
        pressure = self.pressure_of(snap)
        advice = {
            MemoryPressure.LOW: "nothing to do",
            MemoryPressure.MEDIUM: "conservative cleanup (garbage collection) is enough",
            MemoryPressure.HIGH: "balanced cleanup: collect garbage and free framework caches",
            MemoryPressure.CRITICAL: "aggressive cleanup; consider unloading models",
        }[pressure]
        return MemoryAnalysis(snap, pressure, snap.cached_mb + snap.buffers_mb, advice)
