"""Giving torch memory back after a model is dropped."""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["free_torch_memory", "torch_dtype"]


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
