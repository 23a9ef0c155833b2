"""Service settings: a base file plus an optional local override, from paths or env vars.

* ``MODEL_BOSS_SETTINGS``: the base file (JSON, YAML or TOML).
* ``MODEL_BOSS_LOCAL_SETTINGS``: the local override; when unset, a file named ``local`` with
  any supported suffix beside the base file is used if it exists.

The local file is merged over the base one key by key, deeply (see ``deep_merge``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_boss.config._loading import SUFFIXES, deep_merge, read_file
from model_boss.config._manifest import ModelSpec, parse_manifest
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
    base_data = read_file(base_path) if base_path is not None else {}
    local_data = read_file(local) if local is not None else {}
    base_name = str(base_path) if base_path is not None else "<defaults>"
    local_name = str(local) if local is not None else base_name

    def where(key_path: tuple[str, ...]) -> str:
        node: Any = local_data
        for key in key_path:
            if not isinstance(node, Mapping) or key not in node:
                return base_name
            node = node[key]
        return local_name

    merged = deep_merge(base_data, local_data)
    sources = tuple(str(p) for p in (base_path, local) if p is not None)
    return settings_from_mapping(merged, where, sources)


def settings_from_mapping(
    data: Mapping[str, Any], where: Any = "<settings>", sources: tuple[str, ...] = ()
) -> Settings:
    """Validate an already merged mapping; ``where`` names the file (or maps key paths to it)."""
    locate = (lambda _p: where) if isinstance(where, str) else where
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(
                f"{locate((key,))}: {key}: unknown section (expected service, models)"
            )
    service = _service(data.get("service", {}), locate)
    models = parse_manifest(data.get("models", {}), locate)
    return Settings(service, models, sources)


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value).expanduser() if value else None


def _service(raw: Any, locate: Any) -> ServiceSettings:
    def fail(key: str, message: str) -> Any:
        path = ("service", key) if key else ("service",)
        raise ConfigError(f"{locate(path)}: {'.'.join(path)}: {message}")

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
    return ServiceSettings(host, port, level.lower(), root)
