"""Memory pools: GPUs (from NVML or declared) and the host RAM."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from model_boss.errors import ConfigError

__all__ = [
    "DEVICES_ENV",
    "Device",
    "declared_devices",
    "gpu_pool_name",
    "hostname",
    "ram_pool_name",
]

DEVICES_ENV = "MODEL_BOSS_DEVICES"


@dataclass(frozen=True, slots=True)
class Device:
    """One GPU (real or declared). ``total_mb`` is its whole memory in MiB."""

    index: int
    total_mb: int
    name: str = ""
    uuid: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"device index must be an int >= 0, got {self.index!r}")
        if isinstance(self.total_mb, bool) or not isinstance(self.total_mb, int):
            raise ValueError(f"device total_mb must be an int, got {self.total_mb!r}")
        if self.total_mb <= 0:
            raise ValueError(f"device total_mb must be positive, got {self.total_mb}")


def hostname() -> str:
    """The host part of pool names; ``MODEL_BOSS_HOST`` overrides the system name."""
    return os.environ.get("MODEL_BOSS_HOST") or socket.gethostname() or "localhost"


def gpu_pool_name(host: str, index: int) -> str:
    return f"{host}:gpu{index}"


def ram_pool_name(host: str) -> str:
    return f"{host}:ram"


def declared_devices(spec: str | None = None) -> list[Device] | None:
    """Devices declared by ``MODEL_BOSS_DEVICES`` (``"24000,24000"``: MiB per GPU).

    Returns ``None`` when nothing is declared. An entry may carry a name:
    ``"24000:rtx4090,80000:h100"``.
    """
    text = os.environ.get(DEVICES_ENV) if spec is None else spec
    if text is None or not text.strip():
        return None
    devices: list[Device] = []
    for index, item in enumerate(part.strip() for part in text.split(",")):
        size, _, name = item.partition(":")
        try:
            total = int(size)
            devices.append(Device(index=index, total_mb=total, name=name or f"declared{index}"))
        except ValueError:
            raise ConfigError(
                f"{DEVICES_ENV}: entry {index} ({item!r}) must be a positive MiB count, "
                "e.g. MODEL_BOSS_DEVICES=24000,24000"
            ) from None
    return devices
