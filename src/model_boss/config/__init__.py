"""Settings and the model manifest: JSON, YAML or TOML, a base file plus a local override.

Every error is a :class:`~model_boss.errors.ConfigError` whose message names the file and
the key path (``settings.yaml: models.foo.vram_mb: must be a positive integer``).
"""

from __future__ import annotations

from model_boss.config._estimate import (
    DEFAULT_CONTEXT,
    FILE_FACTOR,
    KV_CACHE_BYTES,
    OVERHEAD_MB,
    FootprintBook,
    GgufInfo,
    context_for,
    estimate_vram_mb,
    gpu_layers_for,
    kv_cache_mb,
    read_gguf_info,
    vram_for,
)
from model_boss.config._loading import deep_merge, read_file
from model_boss.config._manifest import (
    BACKENDS,
    CATEGORIES,
    DEFAULT_BACKEND,
    DEFAULT_ENDPOINTS,
    ModelSpec,
    parse_manifest,
)
from model_boss.config._settings import (
    ENV_LOCAL_SETTINGS,
    ENV_SETTINGS,
    ServiceSettings,
    Settings,
    load_settings,
    settings_from_mapping,
)

__all__ = [
    "BACKENDS",
    "CATEGORIES",
    "DEFAULT_BACKEND",
    "DEFAULT_CONTEXT",
    "DEFAULT_ENDPOINTS",
    "ENV_LOCAL_SETTINGS",
    "ENV_SETTINGS",
    "FILE_FACTOR",
    "KV_CACHE_BYTES",
    "OVERHEAD_MB",
    "FootprintBook",
    "GgufInfo",
    "ModelSpec",
    "ServiceSettings",
    "Settings",
    "context_for",
    "deep_merge",
    "estimate_vram_mb",
    "gpu_layers_for",
    "kv_cache_mb",
    "load_settings",
    "parse_manifest",
    "read_file",
    "read_gguf_info",
    "settings_from_mapping",
    "vram_for",
]
