"""The model manifest: one :class:`ModelSpec` per model id, validated with key paths.

Every error names the file and the key path, e.g.
``settings.yaml: models.foo.vram_mb: must be a positive integer``. What the memory
estimate (``vram_for``) reads from an entry is checked here too, so that a bad value fails
when the file is loaded rather than when the service starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_boss.config._estimate import KV_CACHE_BYTES
from model_boss.config._fit import check_lease_fit, gpu_layers_option, model_file
from model_boss.config._origins import KeyPath, Origins, Source
from model_boss.errors import ConfigError

__all__ = [
    "BACKENDS",
    "CATEGORIES",
    "DEFAULT_BACKEND",
    "DEFAULT_ENDPOINTS",
    "ModelSpec",
    "canonical_models",
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

#: A ``vision`` model reads images: it takes them unless ``modalities`` says otherwise.
_DEFAULT_MODALITIES: dict[str, tuple[str, ...]] = {"vision": ("text", "image")}
_NEEDS_PATH = frozenset({"llama_server", "diffusers"})
_OFF_BOX = frozenset({"openai_remote"})  # needs no memory here, so no vram_mb either
_KV_CACHE_KEYS = ("cache_type_k", "cache_type_v")

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
    thinking: bool | None = None
    """``enable_thinking`` for the chat template on every request that does not say
    (None: the template's own default)."""
    endpoints: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ("text",)
    pipeline_type: str | None = None
    dtype: str | None = None
    replicas: int = 1
    replica_max: int = 1
    target_inflight: int = 1
    enabled: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pool_kind(self) -> str | None:
        """``ram`` for a model that runs on the CPU even on a GPU host (``llama_server``
        with ``n_gpu_layers: 0``, ``diffusers`` with ``device: cpu``): it leases host RAM,
        not VRAM. None: the host's default pools."""
        if (
            self.backend == "llama_server"
            and gpu_layers_option(self.options.get("n_gpu_layers")) == 0
        ):
            return "ram"
        if self.backend == "diffusers" and self.options.get("device") == "cpu":
            return "ram"
        return None


_FIELDS = frozenset(ModelSpec.__dataclass_fields__) - {"id", "options"}


def canonical_models(models: Any, file: str) -> tuple[Any, dict[KeyPath, KeyPath]]:
    """One file's ``models`` table with every key in its canonical spelling, and the keys
    that file spelled otherwise (canonical key path -> the key path as written).

    Old names become field names (``model_path`` -> ``path``) and llm-pool's flat backend
    options move into the backend's table (``llama_server_n_ctx`` -> ``llama_server.n_ctx``),
    so that a local override merges over its base key by key whatever spelling each file
    used. Two spellings of one key in one file are an error naming ``file``.
    """
    if not isinstance(models, Mapping):
        return models, {}
    out: dict[str, Any] = {}
    spellings: dict[KeyPath, KeyPath] = {}
    for model_id, entry in models.items():
        base = ("models", str(model_id))
        if isinstance(entry, Mapping):
            entry = _canonical_entry(entry, base, file, spellings)
        out[str(model_id)] = entry
    return out, spellings


def _canonical_entry(
    entry: Mapping[Any, Any], base: KeyPath, file: str, spellings: dict[KeyPath, KeyPath]
) -> dict[str, Any]:
    table: dict[str, Any] = {}
    written_as: dict[str, str] = {}
    flat: list[tuple[str, str, str, Any]] = []
    for raw_key, value in entry.items():
        key = str(raw_key)
        owner = next((b for b in BACKENDS if key.startswith(b + "_")), None)
        if owner is not None:  # llm-pool style flat option, e.g. llama_server_n_ctx
            flat.append((key, owner, key[len(owner) + 1 :], value))
            continue
        name = _ALIASES.get(key, key)
        if name in table:
            _fail_in(file, (*base, key), f"duplicates {written_as[name]!r}")
        table[name], written_as[name] = value, key
        if name != key:
            spellings[(*base, name)] = (*base, key)
    copied: set[str] = set()
    for key, owner, option, value in flat:
        options = table.get(owner, {})
        if not isinstance(options, Mapping):
            _fail_in(file, (*base, owner), "must be a table of backend options")
        if option in options:
            _fail_in(file, (*base, key), f"duplicates '{owner}.{option}'")
        if owner not in copied:  # never change the caller's table
            options = table[owner] = dict(options)
            copied.add(owner)
        options[option] = value
        spellings[(*base, owner, option)] = (*base, key)
    return table


def parse_manifest(
    models: Any, where: Origins | str, *, models_root: str | Path | None = None
) -> dict[str, ModelSpec]:
    """Validate the ``models`` table.

    ``where`` is the file's name, or the :class:`Origins` of settings merged from several
    files, whose ``models`` are then already canonical (see :func:`canonical_models`).
    ``models_root`` is where relative model paths start: a model file found there is read
    to check that the entry's values fit its lease (see ``_fit``).
    """
    if isinstance(where, str):
        models, spellings = canonical_models(models, where)
        where = Origins([Source(where, {"models": models}, spellings)])
    root = ("models",)
    if not isinstance(models, Mapping):
        _fail(where, root, f"must be a table of models, not {type(models).__name__}")
    out: dict[str, ModelSpec] = {}
    for model_id, entry in models.items():
        out[str(model_id)] = _parse_model(str(model_id), entry, where, models_root)
    return out


def _fail(origins: Origins, path: KeyPath, message: str) -> Any:
    raise ConfigError(f"{origins.at(path)}: {message}")


def _fail_in(file: str, path: KeyPath, message: str) -> Any:
    raise ConfigError(f"{file}: {'.'.join(path)}: {message}")


class _Entry:
    """Typed access to one model's table; every failure names its key path."""

    def __init__(self, model_id: str, table: Mapping[str, Any], origins: Origins) -> None:
        self.base = ("models", model_id)
        self.table = table
        self.origins = origins

    def fail(self, key: str | KeyPath, message: str) -> Any:
        keys = (key,) if isinstance(key, str) else key
        return _fail(self.origins, (*self.base, *keys), message)

    def spelled_flat(self, backend: str, option: str) -> bool:
        """Whether ``backend.option`` was written as a flat key (``backend_option``)."""
        path = (*self.base, backend, option)
        return len(self.origins.written(path)) != len(path)

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


def _parse_model(
    model_id: str, raw: Any, origins: Origins, models_root: str | Path | None
) -> ModelSpec:
    if not isinstance(raw, Mapping):
        _fail(origins, ("models", model_id), f"must be a table, not {type(raw).__name__}")
    table = dict(raw)
    e = _Entry(model_id, table, origins)
    category = e.text("category", CATEGORIES) or "llm"
    if category == "audio":
        e.fail(
            "category",
            "audio: no backend serves speech yet (llama-server cannot transcribe); "
            "leave the model out until an audio backend exists",
        )
    backend_raw = table.get("backend")
    if isinstance(backend_raw, str):
        table["backend"] = backend_raw.replace("-", "_")
    backend = e.text("backend", BACKENDS) or DEFAULT_BACKEND[category]
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key in _FIELDS or key == "backend":
            continue
        if key in BACKENDS:
            if key != backend:
                _other_backend(e, key, value, backend)
            if not isinstance(value, Mapping):
                e.fail(key, "must be a table of backend options")
            options = dict(value)
            continue
        close = difflib.get_close_matches(key, [*_FIELDS, *BACKENDS], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        e.fail(key, f"unknown key{hint}")
    for key in _KV_CACHE_KEYS:  # read by the memory estimate
        kind = options.get(key)
        if kind is not None and (not isinstance(kind, str) or kind not in KV_CACHE_BYTES):
            e.fail((backend, key), f"must be one of {', '.join(KV_CACHE_BYTES)} (got {kind!r})")
    path = e.text("path")
    if path is None and backend in _NEEDS_PATH:
        e.fail("path", f"is required for backend {backend}")
    replicas = e.positive_int("replicas") or 1
    replica_max = e.positive_int("replica_max") or replicas
    if replica_max < replicas:
        e.fail("replica_max", f"must be >= replicas ({replicas}), got {replica_max}")
    vram_mb = e.positive_int("vram_mb")
    if vram_mb is None and path is None and backend not in _OFF_BOX:
        e.fail(
            "vram_mb", f"is required for backend {backend} when there is no path to estimate from"
        )
    context_size = e.positive_int("context_size")
    check_lease_fit(
        backend=backend,
        vram_mb=vram_mb,
        context_size=context_size,
        options=options,
        path=model_file(path, models_root),
        fail=e.fail,
    )
    return ModelSpec(
        id=model_id,
        category=category,
        backend=backend,
        path=path,
        name=e.text("name"),
        vram_mb=vram_mb,
        pin=e.flag("pin", False),
        stay_warm=e.seconds("stay_warm"),
        context_size=context_size,
        chat_template=e.text("chat_template"),
        thinking=e.flag("thinking", False) if e.table.get("thinking") is not None else None,
        endpoints=e.words("endpoints") or DEFAULT_ENDPOINTS[category],
        modalities=e.words("modalities") or _DEFAULT_MODALITIES.get(category, ("text",)),
        pipeline_type=e.text("pipeline_type"),
        dtype=e.text("dtype"),
        replicas=replicas,
        replica_max=replica_max,
        target_inflight=e.positive_int("target_inflight") or 1,
        enabled=e.flag("enabled", True),
        options=options,
    )


def _other_backend(e: _Entry, key: str, value: Any, backend: str) -> Any:
    """Fail on options for a backend other than the model's, where the file wrote them."""
    if isinstance(value, Mapping) and value and all(e.spelled_flat(key, o) for o in value):
        option = str(next(iter(value)))
        e.fail(
            (key, option), f"is an option for backend {key} but the model's backend is {backend}"
        )
    e.fail(key, f"is a table for backend {key} but the model's backend is {backend}")
