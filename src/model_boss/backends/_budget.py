"""``LeaseBudget``: the memory a slot's lease lets its backend use, per device; and the
per-process CUDA cap that holds a torch process to it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LeaseBudget", "cap_cuda_memory", "format_fractions", "parse_fractions"]


@dataclass(frozen=True)
class LeaseBudget:
    """What a slot's lease lets its backend use.

    ``gpu_mb`` maps a physical GPU index to the MB leased on it, ``gpu_total_mb`` each of
    those GPUs to its total MB; ``ram_mb`` is the MB leased on the host RAM pool (a RAM slot).
    ``gpus_declared``: the GPUs are declared (``MODEL_BOSS_DEVICES``), not found by NVML, so
    nothing says a real GPU is behind them.
    """

    gpu_mb: Mapping[int, int] = field(default_factory=dict)
    gpu_total_mb: Mapping[int, int] = field(default_factory=dict)
    ram_mb: int = 0
    gpus_declared: bool = False

    @property
    def on_gpu(self) -> bool:
        return bool(self.gpu_mb)

    def share(self, gpu: int) -> float:
        """The leased fraction of GPU ``gpu`` (0 when it is not leased or its total unknown)."""
        total = self.gpu_total_mb.get(gpu, 0)
        return min(1.0, self.gpu_mb.get(gpu, 0) / total) if total > 0 else 0.0

    def smallest_share(self, decimals: int = 3) -> float | None:
        """The smallest leased fraction over the slot's GPUs, rounded down to ``decimals``
        (never 0); None when no GPU is leased or no total is known."""
        shares = [self.share(gpu) for gpu in self.gpu_mb if self.gpu_total_mb.get(gpu, 0) > 0]
        if not shares:
            return None
        scale = float(10**decimals)
        return max(1 / scale, math.floor(min(shares) * scale) / scale)

    def cuda_fractions(self, gpus: Sequence[int] | None = None) -> dict[int, float]:
        """Leased fraction per CUDA device as the process numbers them: the position in
        ``gpus`` (its ``CUDA_VISIBLE_DEVICES``), or the physical index when ``gpus`` is None."""
        order = list(self.gpu_mb) if gpus is None else list(gpus)
        return {
            (i if gpus is not None else gpu): self.share(gpu)
            for i, gpu in enumerate(order)
            if gpu in self.gpu_mb and self.gpu_total_mb.get(gpu, 0) > 0
        }


def format_fractions(fractions: Mapping[int, float]) -> str:
    """``{0: 0.25, 1: 0.5}`` -> ``"0=0.25,1=0.5"`` (an argument or environment value),
    each rounded down to 6 decimals: never above the lease."""
    return ",".join(f"{i}={math.floor(f * 1e6) / 1e6}" for i, f in sorted(fractions.items()))


def parse_fractions(text: str | None) -> dict[int, float]:
    """The inverse of :func:`format_fractions` (empty or None: no caps)."""
    out: dict[int, float] = {}
    for part in filter(None, (text or "").split(",")):
        index, _, value = part.partition("=")
        fraction = float(value)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"a memory fraction must be in (0, 1], got {part!r}")
        out[int(index)] = fraction
    return out


def cap_cuda_memory(fractions: Mapping[int, float], cuda: Any = None) -> dict[int, float]:
    """Cap this process's CUDA caching allocator on each device at its fraction
    (``torch.cuda.set_per_process_memory_fraction``); what was applied. A no-op without
    torch or without CUDA. ``cuda`` stands in for ``torch.cuda`` in tests."""
    if not fractions:
        return {}
    if cuda is None:
        try:
            import torch
        except ImportError:
            return {}
        cuda = torch.cuda
    if not cuda.is_available():
        return {}
    applied: dict[int, float] = {}
    for index, fraction in sorted(fractions.items()):
        applied[index] = min(1.0, max(fraction, 1e-6))
        cuda.set_per_process_memory_fraction(applied[index], device=index)
    return applied
