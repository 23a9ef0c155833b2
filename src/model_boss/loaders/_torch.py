"""Torch memory in the kit's process: capped at what its leases hold, given back after a
model is dropped.

Torch's per-process cap (``set_per_process_memory_fraction``) is one number per device for
the whole process, and one process may hold several models on one GPU: the cap is the sum
of the leases of the models this process holds there, over the device's total. It is raised
before a model loads and lowered when it is unloaded; with no model left it is lifted.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

from model_boss.backends import cap_cuda_memory
from model_boss.loaders._base import Target

__all__ = ["free_torch_memory", "load_capped", "release_cuda_cap", "torch_dtype"]

T = TypeVar("T")

_held: dict[int, tuple[int, int, int]] = {}  # key -> (torch device index, MB, device total)
_by_model: dict[int, int] = {}  # id(model) -> key
_keys = itertools.count(1)


def _device_index(target: Target) -> int | None:
    if target.gpu_index is None or target.total_mb <= 0 or target.mb <= 0:
        return None
    _, _, index = target.device.partition(":")
    return int(index) if index.isdigit() else 0


def _apply(index: int, cuda: Any) -> dict[int, float]:
    held = [(mb, total) for i, mb, total in _held.values() if i == index]
    fraction = min(1.0, sum(mb for mb, _ in held) / held[0][1]) if held else 1.0
    return cap_cuda_memory({index: fraction}, cuda)


async def load_capped(target: Target, load: Callable[[], T], *, cuda: Any = None) -> T:
    """``load()`` in a worker thread, with this process's CUDA cap on the target's device
    raised by the target's lease first; the lease stays counted until
    :func:`release_cuda_cap` is called with the model. On the CPU just ``load()``."""
    index = _device_index(target)
    if index is None:
        return await asyncio.to_thread(load)
    key = next(_keys)
    _held[key] = (index, target.mb, target.total_mb)
    _apply(index, cuda)
    try:
        model = await asyncio.to_thread(load)
    except BaseException:
        _held.pop(key, None)
        _apply(index, cuda)
        raise
    _by_model[id(model)] = key
    return model


def release_cuda_cap(model: object, *, cuda: Any = None) -> None:
    """Lower the cap by the lease of ``model`` (loaded by :func:`load_capped`)."""
    key = _by_model.pop(id(model), None)
    held = None if key is None else _held.pop(key, None)
    if held is not None:
        _apply(held[0], cuda)


def free_torch_memory() -> None:
    """Collect dropped tensors and return CUDA's cached blocks to the driver."""
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch comes with every torch-based loader
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def torch_dtype(name: object, device: str) -> Any:
    """The torch dtype for ``name`` (``auto`` -> None); half precision -> float32 on CPU."""
    import torch

    text = str(name or "auto")
    if text == "auto":
        return None
    if device == "cpu" and text in ("float16", "bfloat16"):
        text = "float32"
    dtype = getattr(torch, text, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} (auto, float32, float16, bfloat16)")
    return dtype
