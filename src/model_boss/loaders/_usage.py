"""What a model loaded by the construction kit really uses, against its lease.

Two cases, told apart by the loaded object:

* It runs in a process of its own (it has a ``backend`` with a ``pid``, as a GGUF model's
  llama-server does): that process tree, as the coordinator measures its slots (PSS on the
  host RAM, NVML per process on its GPU).
* It lives in this process (torch, ONNX Runtime...): what this process uses on the model's
  device now, minus what it used just before the model was loaded (its ``baseline``). With
  several models loading into one process this is approximate: each one's growth counts
  to it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psutil

from model_boss.backends import Backend, GpuProcessProbe, measure_backend
from model_boss.backends._footprint import default_gpu_probe, ram_bytes
from model_boss.loaders._base import Target

__all__ = ["in_process_mb", "measure_loaded"]

_MB = 1024 * 1024


def in_process_mb(target: Target, gpu: GpuProcessProbe | None = None) -> int:
    """MB this process uses now where ``target`` is: on its GPU, or in host RAM (PSS)."""
    if target.gpu_index is None:
        return ram_bytes(psutil.Process()) // _MB
    probe = default_gpu_probe() if gpu is None else gpu
    try:
        per_gpu = probe.process_mb()
    except Exception:  # NVML errors must not break the watch
        return 0
    return int(per_gpu.get(target.gpu_index, {}).get(os.getpid(), 0))


async def measure_loaded(
    obj: Any, target: Target, baseline_mb: int, gpu: GpuProcessProbe | None = None
) -> int:
    """MB the loaded object ``obj`` uses on its target (see the module docstring)."""
    backend = getattr(obj, "backend", None)
    if isinstance(backend, Backend) and isinstance(getattr(backend, "pid", None), int):
        footprint = await measure_backend(backend, gpu=gpu)
        if target.gpu_index is None:
            return footprint.ram_mb
        return int(footprint.vram_mb.get(target.gpu_index, 0))
    now = await asyncio.to_thread(in_process_mb, target, gpu)
    return max(0, now - baseline_mb)
