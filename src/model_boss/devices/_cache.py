"""Give memory back to the host: garbage, framework caches, the page cache (root, on request)."""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import gc
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from model_boss.devices._ram import MemoryAnalyzer, MemoryPressure

__all__ = ["CacheManager", "CleanupMode", "CleanupReport"]

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


class CleanupMode(enum.StrEnum):
    AUTO = "auto"
    CONSERVATIVE = "conservative"
    BALANCED = "balanced"
    AGGRESSIVE = "aggressive"


@dataclass(slots=True)
class CleanupReport:
    mode: CleanupMode
    freed_mb: int
    available_before_mb: int
    available_after_mb: int
    actions: list[str] = field(default_factory=list)


class CacheManager:
    """Cleanup in increasing strength.

    - conservative: ``gc.collect()`` in this process.
    - balanced: also free framework caches already imported here (torch CUDA/MPS
      allocator caches) and return freed heap to the OS (glibc ``malloc_trim``).
    - aggressive: also drop the kernel page cache, only when ``drop_page_cache=True``
      and the process is root (``sync`` first; the cache refills on demand).
    - auto: picks by the current memory pressure (low/medium: conservative,
      high: balanced, critical: aggressive).
    """

    def __init__(self, analyzer: MemoryAnalyzer | None = None) -> None:
        self._analyzer = analyzer or MemoryAnalyzer()

    def cleanup(
        self, mode: CleanupMode | str = CleanupMode.AUTO, *, drop_page_cache: bool = False
    ) -> CleanupReport:
        try:
            chosen = CleanupMode(mode)
        except ValueError:
            modes = ", ".join(m.value for m in CleanupMode)
            raise ValueError(f"unknown cleanup mode {mode!r} (expected one of {modes})") from None
        before = self._analyzer.snapshot()
        if chosen is CleanupMode.AUTO:
            chosen = {
                MemoryPressure.LOW: CleanupMode.CONSERVATIVE,
                MemoryPressure.MEDIUM: CleanupMode.CONSERVATIVE,
                MemoryPressure.HIGH: CleanupMode.BALANCED,
                MemoryPressure.CRITICAL: CleanupMode.AGGRESSIVE,
            }[self._analyzer.pressure_of(before)]
        actions: list[str] = []
        collected = gc.collect()
        actions.append(f"gc.collect: {collected} objects")
        if chosen in (CleanupMode.BALANCED, CleanupMode.AGGRESSIVE):
            actions.extend(_free_framework_caches())
            if _malloc_trim():
                actions.append("malloc_trim(0)")
        if chosen is CleanupMode.AGGRESSIVE:
            if not drop_page_cache:
                actions.append("page cache kept (pass drop_page_cache=True to drop it)")
            elif os.geteuid() != 0:
                actions.append("page cache kept (dropping it needs root)")
            else:
                os.sync()
                DROP_CACHES.write_text("1\n")
                actions.append("dropped the page cache")
        after = self._analyzer.snapshot()
        return CleanupReport(
            mode=chosen,
            freed_mb=max(0, after.available_mb - before.available_mb),
            available_before_mb=before.available_mb,
            available_after_mb=after.available_mb,
            actions=actions,
        )


def _free_framework_caches() -> list[str]:
    """Empty allocator caches of frameworks this process has already imported (never imports)."""
    actions: list[str] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
                actions.append("torch.cuda.empty_cache()")
            mps = getattr(torch, "mps", None)
            if mps is not None and torch.backends.mps.is_available():
                mps.empty_cache()
                actions.append("torch.mps.empty_cache()")
        except Exception as exc:  # a broken framework install must not break cleanup
            actions.append(f"torch cache cleanup failed: {exc}")
    return actions


def _malloc_trim() -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False
