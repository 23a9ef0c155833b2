"""Service settings: a base file plus an optional local override, from paths or env vars.

* ``MODEL_BOSS_SETTINGS``: the base file (JSON, YAML or TOML).
* ``MODEL_BOSS_LOCAL_SETTINGS``: the local override; when unset, a file named ``local`` with
  any supported suffix beside the base file is used if it exists.

The local file is merged over the base one key by key, deeply (see ``deep_merge``), after
each file's old key spellings are resolved, so the local file wins per key whatever
spelling each file used; an error names the file the bad value came from and the key as
that file wrote it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_boss.config._loading import SUFFIXES, deep_merge, read_file
from model_boss.config._manifest import ModelSpec, canonical_models, parse_manifest
from model_boss.config._origins import Origins, Source
from model_boss.errors import ConfigError

__all__ = [
    "ENV_LOCAL_SETTINGS",
    "ENV_SETTINGS",
    "ServiceSettings",
    "Settings",
    "load_settings",
    "settings_from_mapping",
]

ENV_SETTINGS = "MODEL_BOSS_SETTINGS"
ENV_LOCAL_SETTINGS = "MODEL_BOSS_LOCAL_SETTINGS"
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_SECTIONS = ("service", "models")


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    host: str = "127.0.0.1"
    port: int = 8210
    log_level: str = "info"
    models_root: str | None = None  # where relative model paths start
    max_queue: int = 10_000  # requests waiting before new ones get 429
    max_answer_mb: float = 16.0  # the largest non-streamed backend answer read (else 502)
    max_connections: int = 1000  # open client connections; more get 503 and are closed
    backlog: int = 2048  # connections the kernel queues before they are accepted
    header_timeout_s: float = 10.0  # a request head must arrive within this
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this


@dataclass(frozen=True, slots=True)
class Settings:
    service: ServiceSettings = field(default_factory=ServiceSettings)
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


def load_settings(
    path: str | Path | None = None,
    local_path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read, merge and validate the settings; defaults only when no file is given."""
    env = os.environ if env is None else env
    base_path = Path(path) if path is not None else _env_path(env, ENV_SETTINGS)
    local = Path(local_path) if local_path is not None else _env_path(env, ENV_LOCAL_SETTINGS)
    if local is None and base_path is not None:
        local = next(
            (c for s in SUFFIXES if (c := base_path.with_name("local" + s)).is_file()), None
        )
    files = [(p, read_file(p)) for p in (base_path, local) if p is not None]
    sources = [_source(str(p), data) for p, data in files]
    merged = sources[0].data if sources else {}
    for source in sources[1:]:  # each file's keys canonical first: the local file wins per key
        merged = deep_merge(merged, source.data)
    return settings_from_mapping(merged, Origins(sources), tuple(str(p) for p, _ in files))


def settings_from_mapping(
    data: Mapping[str, Any], where: str | Origins = "<settings>", sources: tuple[str, ...] = ()
) -> Settings:
    """Validate one settings mapping; ``where`` is its file's name, or the :class:`Origins`
    of a mapping merged from several files (whose keys are then already canonical)."""
    if isinstance(where, str):
        source = _source(where, data)
        data, where = source.data, Origins([source])
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(
                f"{where.at((str(key),))}: unknown section (expected service, models)"
            )
    service = _service(data.get("service", {}), where)
    service = _connections(service, data.get("service", {}), where)
    models = parse_manifest(data.get("models", {}), where, models_root=service.models_root)
    return Settings(service, models, sources)


def _connections(
    service: ServiceSettings, raw: Mapping[str, Any], origins: Origins
) -> ServiceSettings:
    """``service`` with the connection limits of its table (see api/_connection_guard.py)."""
    values: dict[str, Any] = {}
    for key, kind, low, high in (
        ("max_connections", int, 1, 1_000_000),
        ("backlog", int, 1, 1_000_000),
        ("header_timeout_s", float, 0.1, 3600.0),
        ("keep_alive_s", float, 1.0, 3600.0),
    ):
        if key not in raw:
            continue
        value = raw[key]
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        if bad or (kind is int and not isinstance(value, int)) or not low <= value <= high:
            word = "an integer" if kind is int else "a number"
            raise ConfigError(
                f"{origins.at(('service', key))}: must be {word} from {low:g} to {high:g}"
                f" (got {value!r})"
            )
        values[key] = kind(value)
    return dataclasses.replace(service, **values)


def _source(name: str, data: Mapping[str, Any]) -> Source:
    """One file's settings, its models' keys in their canonical spelling."""
    if "models" not in data:
        return Source(name, data)
    models, spellings = canonical_models(data["models"], name)
    return Source(name, {**data, "models": models}, spellings)


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value).expanduser() if value else None


def _service(raw: Any, origins: Origins) -> ServiceSettings:
    def fail(key: str, message: str) -> Any:
        path = ("service", key) if key else ("service",)
        raise ConfigError(f"{origins.at(path)}: {message}")

    if not isinstance(raw, Mapping):
        fail("", "must be a table")
    known = ServiceSettings.__dataclass_fields__
    for key in raw:
        if key not in known:
            fail(str(key), f"unknown key (expected one of {', '.join(known)})")
    host = raw.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        fail("host", "must be a non-empty string")
    port = raw.get("port", 8210)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        fail("port", f"must be an integer from 1 to 65535 (got {port!r})")
    level = raw.get("log_level", "info")
    if not isinstance(level, str) or level.lower() not in _LOG_LEVELS:
        fail("log_level", f"must be one of {', '.join(_LOG_LEVELS)} (got {level!r})")
    root = raw.get("models_root")
    if root is not None and (not isinstance(root, str) or not root):
        fail("models_root", "must be a non-empty string")
    max_queue = raw.get("max_queue", 10_000)
    if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
        fail("max_queue", f"must be a positive integer (got {max_queue!r})")
    answer = raw.get("max_answer_mb", 16.0)
    if isinstance(answer, bool) or not isinstance(answer, int | float) or not 0 < answer <= 4096:
        fail("max_answer_mb", f"must be a number above 0, at most 4096 (got {answer!r})")
    return ServiceSettings(host, port, level.lower(), root, max_queue, float(answer))
