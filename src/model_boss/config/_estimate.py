"""Memory estimates for models whose manifest entry gives no ``vram_mb``.

* GGUF files: the weights (sum of the tensors' sizes) plus the KV cache for the context,
  ``layers * context * kv_heads * (key_dim * k_bytes + value_dim * v_bytes)``, plus
  the overhead: :data:`OVERHEAD_MB` for the CUDA context and scratch buffers, plus the
  logits of one 512-token micro-batch (``vocab x 512 x 4`` bytes, 96 MB for a 49k
  vocabulary), measured on an H200 (CUDA 13) as 611-626 MB for SmolLM2 against 608 here.
* Anything else: the file size (a directory: the sum of its files) times :data:`FILE_FACTOR`.

A footprint measured at run time above the estimate replaces it for the next load
(:class:`FootprintBook`, and ``SlotReady.footprint_mb`` in the scheduler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_boss.errors import ConfigError

if TYPE_CHECKING:  # annotations only: _manifest imports KV_CACHE_BYTES from here
    from model_boss.config._manifest import ModelSpec

__all__ = [
    "DEFAULT_CONTEXT",
    "FILE_FACTOR",
    "KV_CACHE_BYTES",
    "OVERHEAD_MB",
    "FootprintBook",
    "GgufInfo",
    "context_for",
    "estimate_vram_mb",
    "gpu_layers_for",
    "kv_cache_mb",
    "read_gguf_info",
    "vram_for",
]

OVERHEAD_MB = 512
#: llama.cpp's default micro-batch (``--ubatch-size``): its logits buffer is in the overhead.
UBATCH = 512
FILE_FACTOR = 1.2
DEFAULT_CONTEXT = 4096
_MB = 1024 * 1024

#: Bytes per element of the KV cache for llama.cpp's ``--cache-type-k/-v`` values.
KV_CACHE_BYTES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}


@dataclass(frozen=True, slots=True)
class GgufInfo:
    architecture: str
    layers: int
    kv_heads: int
    key_dim: int
    value_dim: int
    context_length: int
    weights_bytes: int
    layer_weights_bytes: int = 0  # the repeating blocks (``blk.N.*``), what offloading moves
    vocab_size: int = 0

    @property
    def overhead_mb(self) -> float:
        """Memory beside weights and KV cache: :data:`OVERHEAD_MB` (CUDA context, scratch)
        plus the logits of one micro-batch (``vocab x UBATCH x 4`` bytes), which llama.cpp's
        compute buffer holds and which grows with the vocabulary."""
        return OVERHEAD_MB + self.vocab_size * UBATCH * 4 / _MB

    @property
    def layer_mb(self) -> float:
        """MB of weights in one repeating layer."""
        return self.layer_weights_bytes / max(1, self.layers) / _MB

    @property
    def other_weights_mb(self) -> float:
        """MB of weights outside the repeating layers (embeddings, output)."""
        return (self.weights_bytes - self.layer_weights_bytes) / _MB


def read_gguf_info(path: str | Path) -> GgufInfo:
    """The metadata of a GGUF file that the estimate needs (read by ``_gguf.py``)."""
    from model_boss.config._gguf import read_gguf_header

    try:
        header = read_gguf_header(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: not a readable GGUF file: {exc}") from None
    fields: dict[str, Any] = header.fields
    arch = fields.get("general.architecture")
    if not isinstance(arch, str):
        raise ConfigError(f"{path}: GGUF file has no general.architecture")
    layers = fields.get(f"{arch}.block_count")
    heads = fields.get(f"{arch}.attention.head_count")
    kv_heads = fields.get(f"{arch}.attention.head_count_kv")
    embed = fields.get(f"{arch}.embedding_length")
    if isinstance(kv_heads, list):  # per-layer counts in some architectures
        kv_heads = max(kv_heads)
    if isinstance(heads, list):
        heads = max(heads)
    if not isinstance(layers, int) or not isinstance(heads, int) or not isinstance(embed, int):
        raise ConfigError(f"{path}: GGUF file lacks {arch}.block_count/head_count/embedding_length")
    kv = int(kv_heads) if isinstance(kv_heads, int) else heads
    key_dim = fields.get(f"{arch}.attention.key_length") or embed // max(1, heads)
    value_dim = fields.get(f"{arch}.attention.value_length") or key_dim
    ctx = fields.get(f"{arch}.context_length") or DEFAULT_CONTEXT
    weights = sum(size for _, size in header.tensors)
    in_layers = sum(size for name, size in header.tensors if name.startswith("blk."))
    vocab = fields.get(f"{arch}.vocab_size") or header.array_lengths.get("tokenizer.ggml.tokens", 0)
    return GgufInfo(
        arch, layers, kv, int(key_dim), int(value_dim), int(ctx), weights, in_layers, int(vocab)
    )


def kv_cache_mb(
    info: GgufInfo, context_size: int, cache_type_k: str = "f16", cache_type_v: str = "f16"
) -> float:
    try:
        kb, vb = KV_CACHE_BYTES[cache_type_k], KV_CACHE_BYTES[cache_type_v]
    except KeyError as exc:
        raise ConfigError(f"unknown KV cache type {exc.args[0]!r}") from None
    per_token = info.kv_heads * (info.key_dim * kb + info.value_dim * vb)
    return info.layers * context_size * per_token / _MB


def context_for(model: str | Path | GgufInfo | None, context_size: int | None = None) -> int:
    """The context the estimate assumes: ``context_size`` when given, else
    :data:`DEFAULT_CONTEXT` capped by a GGUF model's own trained context (``model`` is the
    file or its metadata; a file that is not a readable GGUF: :data:`DEFAULT_CONTEXT`)."""
    if context_size:
        return context_size
    if isinstance(model, GgufInfo):
        return _context(model, None)
    if model is None:
        return DEFAULT_CONTEXT
    p = Path(model)
    if p.suffix.lower() != ".gguf" or not p.is_file():
        return DEFAULT_CONTEXT
    try:
        return _context(read_gguf_info(p), None)
    except ConfigError:
        return DEFAULT_CONTEXT


def _context(info: GgufInfo, context_size: int | None) -> int:
    return context_size or min(info.context_length, DEFAULT_CONTEXT)


def gpu_layers_for(
    info: GgufInfo,
    budget_mb: int,
    context_size: int,
    cache_type_k: str = "f16",
    cache_type_v: str = "f16",
) -> int:
    """How many layers fit in ``budget_mb``: what is left after the overhead, the KV
    cache and the weights outside the layers, divided by one layer's weights; all of them
    (``info.layers``) exactly when the budget covers the estimate."""
    kv = kv_cache_mb(info, context_size, cache_type_k, cache_type_v)
    room = budget_mb - info.overhead_mb - kv - info.other_weights_mb
    if room >= info.layers * info.layer_mb:
        return info.layers
    if room <= 0 or info.layer_mb <= 0:
        return 0
    return min(info.layers, math.floor(room / info.layer_mb))


def estimate_vram_mb(
    path: str | Path,
    *,
    context_size: int | None = None,
    cache_type_k: str = "f16",
    cache_type_v: str = "f16",
) -> int:
    """Estimated MB a backend needs to serve the model at ``path``."""
    p = Path(path)
    if p.suffix.lower() == ".gguf" and p.is_file():
        info = read_gguf_info(p)
        kv = kv_cache_mb(info, _context(info, context_size), cache_type_k, cache_type_v)
        return math.ceil(info.weights_bytes / _MB + kv + info.overhead_mb)
    if p.is_dir():
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    elif p.is_file():
        size = p.stat().st_size
    else:
        raise ConfigError(f"{p}: no such model file; set vram_mb in the manifest")
    return math.ceil(size / _MB * FILE_FACTOR)


def vram_for(spec: ModelSpec, models_root: str | Path | None = None) -> int:
    """The manifest's ``vram_mb`` if given, otherwise an estimate from the model's file.

    Remote models (``openai_remote``) need 0 MB.
    """
    if spec.vram_mb is not None:
        return spec.vram_mb
    if spec.backend == "openai_remote":
        return 0  # runs off-box
    if spec.path is None:  # parse_manifest rejects this; a ModelSpec built by hand may not
        raise ConfigError(f"models.{spec.id}: needs vram_mb (no path to estimate from)")
    p = Path(spec.path).expanduser()
    if not p.is_absolute() and models_root is not None:
        p = Path(models_root).expanduser() / p
    opts = spec.options
    return estimate_vram_mb(
        p,
        context_size=spec.context_size,
        cache_type_k=str(opts.get("cache_type_k") or "f16"),
        cache_type_v=str(opts.get("cache_type_v") or "f16"),
    )


class FootprintBook:
    """Footprints measured at run time; they replace the estimate for the next load."""

    def __init__(self) -> None:
        self._measured: dict[str, int] = {}

    def record(self, model_id: str, mb: int) -> None:
        if mb > 0:
            self._measured[model_id] = mb

    def get(self, model_id: str) -> int | None:
        return self._measured.get(model_id)

    def vram_for(self, spec: ModelSpec, models_root: str | Path | None = None) -> int:
        measured = self._measured.get(spec.id)
        return measured if measured is not None else vram_for(spec, models_root)
