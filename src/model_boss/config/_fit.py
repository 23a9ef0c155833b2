"""Manifest values that must fit the lease the model will hold, checked when the file loads.

The lease is ``vram_mb`` when the entry gives it (on the GPUs, or on the host RAM for a
``llama_server`` model with ``n_gpu_layers: 0``). A value that cannot fit it would fail
(or overrun the lease) only once the engine starts, so it is a :class:`ConfigError`
naming the file and the key instead:

* a GGUF model whose weights and KV cache for its context exceed ``vram_mb``
  (on ``context_size`` when the entry sets one, else on ``vram_mb``);
* ``llama_server.n_gpu_layers`` asking for more layers than ``vram_mb`` holds;
* ``vllm_serve.gpu_memory_utilization`` beside ``vram_mb``: the utilization sizes the lease
  from the GPU's total, so the two would disagree on any GPU but one;
* ``vllm_serve.kv_cache_memory_bytes`` larger than ``vram_mb``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from model_boss.config._estimate import (
    GgufInfo,
    context_for,
    kv_cache_mb,
    read_gguf_info,
)
from model_boss.errors import ConfigError

__all__ = ["check_lease_fit", "gpu_layers_option", "model_file"]

Fail = Callable[[tuple[str, ...], str], Any]
_MB = 1024 * 1024


def gpu_layers_option(value: Any) -> int | None:
    """``llama_server.n_gpu_layers`` as a number of layers (None: all, auto or unset)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def model_file(path: str | None, models_root: str | Path | None) -> Path | None:
    """The model's file, if its path can be resolved without the backends' defaults."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_absolute():
        if models_root is None:
            return None
        p = Path(models_root).expanduser() / p
    return p


def check_lease_fit(
    *,
    backend: str,
    vram_mb: int | None,
    context_size: int | None,
    options: Mapping[str, Any],
    path: Path | None,
    fail: Fail,
) -> None:
    """Fail (through ``fail(key_path, message)``) on a value that cannot fit ``vram_mb``."""
    if vram_mb is None:
        return
    if backend == "vllm_serve":
        _check_vllm(vram_mb, options, fail)
    elif backend == "llama_server" and path is not None:
        info = _gguf_info(path)
        if info is not None:
            _check_gguf(info, vram_mb, context_for(path, context_size), context_size, options, fail)


def _gguf_info(path: Path) -> GgufInfo | None:
    if path.suffix.lower() != ".gguf" or not path.is_file():
        return None
    try:
        return read_gguf_info(path)
    except ConfigError:
        return None  # not checked here; the engine reports a file it cannot read


def _check_gguf(
    info: GgufInfo,
    vram_mb: int,
    context: int,
    context_size: int | None,
    options: Mapping[str, Any],
    fail: Fail,
) -> None:
    kv = kv_cache_mb(
        info,
        context,
        str(options.get("cache_type_k") or "f16"),
        str(options.get("cache_type_v") or "f16"),
    )
    layers = gpu_layers_option(options.get("n_gpu_layers"))
    if layers is not None and 0 < layers < info.layers:
        need = layers * info.layer_mb + kv
        if need > vram_mb:
            fail(
                ("llama_server", "n_gpu_layers"),
                f"{layers} layers take {math.ceil(layers * info.layer_mb)} MB and the KV cache"
                f" for {context} tokens {math.ceil(kv)} MB, more than the lease"
                f" (vram_mb: {vram_mb} MB)",
            )
        return
    weights = info.weights_bytes / _MB
    if weights + kv > vram_mb:
        key = ("context_size",) if context_size is not None else ("vram_mb",)
        fail(
            key,
            f"the KV cache for {context} tokens takes {math.ceil(kv)} MB; with"
            f" {math.ceil(weights)} MB of weights that is more than the lease"
            f" (vram_mb: {vram_mb} MB)",
        )


def _check_vllm(vram_mb: int, options: Mapping[str, Any], fail: Fail) -> None:
    if options.get("gpu_memory_utilization") is not None:
        fail(
            ("vllm_serve", "gpu_memory_utilization"),
            f"sizes the lease from the GPU's total, and vram_mb ({vram_mb} MB) sizes it"
            " too: set one of them",
        )
    kv_bytes = options.get("kv_cache_memory_bytes")
    if isinstance(kv_bytes, int) and not isinstance(kv_bytes, bool) and kv_bytes > vram_mb * _MB:
        fail(
            ("vllm_serve", "kv_cache_memory_bytes"),
            f"{math.ceil(kv_bytes / _MB)} MB of KV cache is more than the lease"
            f" (vram_mb: {vram_mb} MB)",
        )
