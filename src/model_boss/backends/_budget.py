"""``LeaseBudget``: the memory a slot's lease lets its backend use, per device."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["LeaseBudget"]


@dataclass(frozen=True)
class LeaseBudget:
    """What a slot's lease lets its backend use.

    ``gpu_mb`` maps a physical GPU index to the MB leased on it, ``gpu_total_mb`` each of
    those GPUs to its total MB; ``ram_mb`` is the MB leased on the host RAM pool (a RAM slot).
    """

    gpu_mb: Mapping[int, int] = field(default_factory=dict)
    gpu_total_mb: Mapping[int, int] = field(default_factory=dict)
    ram_mb: int = 0

    @property
    def on_gpu(self) -> bool:
        return bool(self.gpu_mb)
