"""What every loader is: the ``Loader`` protocol, where a model goes, and the kit's errors.

A loader knows one framework (llama.cpp, diffusers, transformers, ONNX Runtime, or your own
function): how big a model will be, how to load it onto a device, and how to let it go. It
knows nothing about leases; :class:`~model_boss.loaders.ManagedModelLoader` takes the lease
first and calls the loader only once the memory is the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from model_boss.backends import LeaseBudget
from model_boss.config import estimate_vram_mb
from model_boss.errors import ModelBossError

__all__ = [
    "Loader",
    "LoaderError",
    "ModelLoadFailed",
    "ModelUnloaded",
    "Target",
    "UnknownLoader",
    "estimate_from_files",
]


class LoaderError(ModelBossError):
    """Base of the construction kit's errors (``model_boss.loaders``)."""


class UnknownLoader(LoaderError, ValueError):
    """No loader of that kind, or none can be told from the model's path."""


class ModelLoadFailed(LoaderError):
    """The framework could not load the model; the lease taken for it was released."""


class ModelUnloaded(LoaderError):
    """The model was unloaded (asked for, idle, preempted, or its lease was lost)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a model is loaded: ``device`` as torch spells it (``cuda:0``, ``cpu``)."""

    device: str
    gpu_index: int | None = None  # the physical GPU (None: host RAM)
    mb: int = 0  # the memory leased for it
    total_mb: int = 0  # the GPU's total memory (0: unknown, or host RAM)

    @property
    def on_gpu(self) -> bool:
        return self.gpu_index is not None

    @property
    def budget(self) -> LeaseBudget:
        """The lease as a backend takes it (for loaders that run a backend process)."""
        if self.gpu_index is None:
            return LeaseBudget(ram_mb=self.mb)
        totals = {self.gpu_index: self.total_mb} if self.total_mb > 0 else {}
        return LeaseBudget(gpu_mb={self.gpu_index: self.mb}, gpu_total_mb=totals)


@runtime_checkable
class Loader(Protocol):
    """One framework's way to load and unload a model.

    ``load`` returns the framework's object (a pipeline, a model, a session...). Blocking
    framework calls belong in a worker thread (``asyncio.to_thread``) so that the event
    loop, and with it the lease heartbeat, keeps running during a long load.
    """

    kind: str

    def estimate_mb(self, path: Path | None, options: Mapping[str, Any]) -> int | None:
        """Memory the model will need, or None when this loader cannot tell."""
        ...

    async def load(
        self, model_id: str, path: Path | None, target: Target, options: Mapping[str, Any]
    ) -> Any:
        """Load the model onto ``target``; raise on failure (nothing may stay loaded)."""
        ...

    async def unload(self, model: Any) -> None:
        """Let the model go and give its memory back to the device."""
        ...


def estimate_from_files(path: Path | None) -> int | None:
    """The size on disk times the documented factor (``config.FILE_FACTOR``); None when
    there is nothing to measure. Blocking: it walks a directory."""
    if path is None or not path.exists():
        return None
    return estimate_vram_mb(path)
