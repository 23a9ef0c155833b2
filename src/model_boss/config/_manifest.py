"""The model manifest: one :class:`ModelSpec` per model id, validated with key paths.

Every error names the file and the key path, e.g.
``settings.yaml: models.foo.vram_mb: must be a positive integer``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from model_boss.errors import ConfigError

__all__ = [
    "BACKENDS",
    "CATEGORIES",
    "DEFAULT_BACKEND",
    "DEFAULT_ENDPOINTS",
    "ModelSpec",
    "parse_manifest",
]

CATEGORIES = ("llm", "embedding", "diffusion", "vision", "audio")
BACKENDS = ("llama_server", "vllm_serve", "openai_remote", "diffusers", "simulated")

#: The backend a model gets when its manifest entry names none.
DEFAULT_BACKEND: dict[str, str] = {
    "llm": "llama_server",
    "embedding": "llama_server",
    "vision": "llama_server",
    "audio": "llama_server",
    "diffusion": "diffusers",
}

DEFAULT_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "llm": ("chat", "completion"),
    "embedding": ("embed",),
    "vision": ("chat",),
    "audio": ("transcribe",),
    "diffusion": ("generate-image",),
}

_NEEDS_PATH = frozenset({"llama_server", "diffusers"})

#: Spellings from the older manifests (Model Boss 4, llm-pool) -> field name.
_ALIASES = {
    "model_path": "path",
    "chatTemplate": "chat_template",
    "enable_thinking": "thinking",
    "stay_warm_s": "stay_warm",
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model of the manifest, validated and with defaults filled in."""

    id: str
    category: str = "llm"
    backend: str = "llama_server"
    path: str | None = None
    name: str | None = None
    vram_mb: int | None = None
    pin: bool = False
    stay_warm: float | None = None
    context_size: int | None = None
    chat_template: str | None = None
    thinking: bool = False
    endpoints: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ("text",)
    pipeline_type: str | None = None
    dtype: str | None = None
    replicas: int = 1
    replica_max: int = 1
    target_inflight: int = 1
    enabled: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)


Where = Callable[[tuple[str, ...]], str]

_FIELDS = frozenset(ModelSpec.__dataclass_fields__) - {"id", "options"}


def parse_manifest(models: Any, where: Where | str) -> dict[str, ModelSpec]:
    """Validate the ``models`` table; ``where`` is the file name, or maps a key path to it."""
    locate: Where = (lambda _path: where) if isinstance(where, str) else where
    root = ("models",)
    if not isinstance(models, Mapping):
        _fail(locate, root, f"must be a table of models, not {type(models).__name__}")
    out: dict[str, ModelSpec] = {}
    for model_id, entry in models.items():
        out[str(model_id)] = _parse_model(str(model_id), entry, locate)
    return out


def _fail(locate: Where, path: tuple[str, ...], message: str) -> Any:
    raise ConfigError(f"{locate(path)}: {'.'.join(path)}: {message}")


class _Entry:
    """Typed access to one model's table; every failure names its key path."""

    def __init__(self, model_id: str, table: Mapping[str, Any], locate: Where) -> None:
        self.base = ("models", model_id)
        self.table = table
        self.locate = locate

    def fail(self, key: str, message: str) -> Any:
        return _fail(self.locate, (*self.base, key), message)

    def text(self, key: str, choices: tuple[str, ...] | None = None) -> str | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "must be a non-empty string")
        if choices is not None and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)} (got {value!r})")
        return str(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false (got {value!r})")
        return bool(value)

    def positive_int(self, key: str) -> int | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(key, f"must be a positive integer (got {value!r})")
        return int(value)

    def seconds(self, key: str) -> float | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self.fail(key, f"must be a number of seconds >= 0 (got {value!r})")
        return float(value)

    def words(self, key: str) -> tuple[str, ...] | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, "must be a list of strings")
        return tuple(value)


def _parse_model(model_id: str, raw: Any, locate: Where) -> ModelSpec:
    if not isinstance(raw, Mapping):
        _fail(locate, ("models", model_id), f"must be a table, not {type(raw).__name__}")
    table: dict[str, Any] = {}
    for key, value in raw.items():
        name = _ALIASES.get(str(key), str(key))
        if name in table:
            _fail(locate, ("models", model_id, str(key)), f"duplicates {name!r}")
        table[name] = value
    e = _Entry(model_id, table, locate)
    category = e.text("category", CATEGORIES) or "llm"
    backend_raw = table.get("backend")
    if isinstance(backend_raw, str):
        table["backend"] = backend_raw.replace("-", "_")
    backend = e.text("backend", BACKENDS) or DEFAULT_BACKEND[category]
    options: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for key in table:
        if key in _FIELDS or key == "backend":
            continue
        if key in BACKENDS:
            if key != backend:
                e.fail(key, f"is a table for backend {key} but the model's backend is {backend}")
            if not isinstance(table[key], Mapping):
                e.fail(key, "must be a table of backend options")
            options = dict(table[key])
            continue
        owner = next((b for b in BACKENDS if key.startswith(b + "_")), None)
        if owner is not None:  # llm-pool style flat option, e.g. llama_server_n_ctx
            if owner != backend:
                e.fail(
                    key, f"is an option for backend {owner} but the model's backend is {backend}"
                )
            flat[key[len(owner) + 1 :]] = table[key]
            continue
        close = difflib.get_close_matches(key, [*_FIELDS, *BACKENDS], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        e.fail(key, f"unknown key{hint}")
    options = {**flat, **options}
    path = e.text("path")
    if path is None and backend in _NEEDS_PATH:
        e.fail("path", f"is required for backend {backend}")
    replicas = e.positive_int("replicas") or 1
    replica_max = e.positive_int("replica_max") or replicas
    if replica_max < replicas:
        e.fail("replica_max", f"must be >= replicas ({replicas}), got {replica_max}")
    return ModelSpec(
        id=model_id,
        category=category,
        backend=backend,
        path=path,
        name=e.text("name"),
        vram_mb=e.positive_int("vram_mb"),
        pin=e.flag("pin", False),
        stay_warm=e.seconds("stay_warm"),
        context_size=e.positive_int("context_size"),
        chat_template=e.text("chat_template"),
        thinking=e.flag("thinking", False),
        endpoints=e.words("endpoints") or DEFAULT_ENDPOINTS[category],
        modalities=e.words("modalities") or ("text",),
        pipeline_type=e.text("pipeline_type"),
        dtype=e.text("dtype"),
        replicas=replicas,
        replica_max=replica_max,
        target_inflight=e.positive_int("target_inflight") or 1,
        enabled=e.flag("enabled", True),
        options=options,
    )
