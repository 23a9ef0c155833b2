"""Reading one manifest entry into typed options, with errors that name the key path.

A manifest entry holds shared fields at its top (``path``, ``context_size``,
``chat_template``...) and one table per backend kind (``llama_server: {...}``,
``vllm: {...}``, ``remote: {...}``, ``diffusers: {...}``, ``simulated: {...}``). Unknown
keys inside a backend's table are errors (a typo must not be silently ignored); the top
level belongs to the manifest layer, so unknown keys there are left alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_boss.backends._paths import models_dir
from model_boss.errors import ConfigError

__all__ = ["EntryReader"]

_MISSING: Any = object()


class EntryReader:
    """Typed access to one manifest entry and its backend table; errors name ``model.key``."""

    def __init__(self, model_id: str, entry: Mapping[str, Any], table: str) -> None:
        if not isinstance(entry, Mapping):
            raise ConfigError(f"model {model_id!r}: entry must be a table, got {entry!r}")
        self.model_id = model_id
        self.entry = entry
        self.table_name = table
        raw = entry.get(table, {})
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"model {model_id!r}: {table} must be a table, got {raw!r}")
        self.table: Mapping[str, Any] = raw
        self._seen: set[str] = set()

    def error(self, key: str, problem: str, value: Any = _MISSING) -> ConfigError:
        got = "" if value is _MISSING else f", got {value!r}"
        return ConfigError(f"model {self.model_id!r}: {key}: {problem}{got}")

    def _get(self, key: str, *, top: bool) -> tuple[str, Any]:
        if top:
            return key, self.entry.get(key, _MISSING)
        self._seen.add(key)
        return f"{self.table_name}.{key}", self.table.get(key, _MISSING)

    def raw(self, key: str, *, top: bool = False) -> tuple[str, Any]:
        """The key path and the value as written (None when absent), for custom checks."""
        path, value = self._get(key, top=top)
        return path, None if value is _MISSING else value

    def finish(self) -> None:
        """Reject keys of the backend table that no option read."""
        unknown = sorted(set(self.table) - self._seen)
        if unknown:
            raise self.error(f"{self.table_name}.{unknown[0]}", "unknown key")

    def string(self, key: str, default: str | None = None, *, top: bool = False) -> str | None:
        path, value = self._get(key, top=top)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self.error(path, "expected a non-empty string", value)
        return value

    def required_string(self, key: str, *, top: bool = False) -> str:
        value = self.string(key, top=top)
        if value is None:
            raise self.error(key if top else f"{self.table_name}.{key}", "is required")
        return value

    def integer(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        top: bool = False,
    ) -> int | None:
        path, value = self._get(key, top=top)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, "expected an integer", value)
        if minimum is not None and value < minimum:
            raise self.error(path, f"must be >= {minimum}", value)
        if maximum is not None and value > maximum:
            raise self.error(path, f"must be <= {maximum}", value)
        return value

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
        top: bool = False,
    ) -> float | None:
        path, value = self._get(key, top=top)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(path, "expected a number", value)
        number = float(value)
        if not math.isfinite(number):
            raise self.error(path, "must be finite", value)
        if minimum is not None and (number < minimum or (exclusive_minimum and number == minimum)):
            raise self.error(
                path, f"must be {'>' if exclusive_minimum else '>='} {minimum:g}", value
            )
        if maximum is not None and number > maximum:
            raise self.error(path, f"must be <= {maximum:g}", value)
        return number

    def boolean(self, key: str, default: bool, *, top: bool = False) -> bool:
        path, value = self._get(key, top=top)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(path, "expected true or false", value)
        return value

    def choice(
        self, key: str, choices: tuple[str, ...], default: str | None = None, *, top: bool = False
    ) -> str | None:
        path, value = self._get(key, top=top)
        if value is _MISSING or value is None:
            return default
        if value not in choices:
            raise self.error(path, f"expected one of {', '.join(choices)}", value)
        return str(value)

    def string_list(self, key: str, *, top: bool = False) -> tuple[str, ...]:
        path, value = self._get(key, top=top)
        if value is _MISSING or value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise self.error(path, "expected a list of strings", value)
        items: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise self.error(f"{path}[{index}]", "expected a string", item)
            items.append(str(item))
        return tuple(items)

    def string_map(self, key: str, *, top: bool = False) -> dict[str, str]:
        path, value = self._get(key, top=top)
        if value is _MISSING or value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(path, "expected a table of strings", value)
        result: dict[str, str] = {}
        for name, item in value.items():
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise self.error(f"{path}.{name}", "expected a string", item)
            result[str(name)] = str(item)
        return result

    def json_table(self, key: str, *, top: bool = False) -> dict[str, Any] | None:
        path, value = self._get(key, top=top)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.error(path, "expected a table", value)
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise self.error(path, f"must be JSON-serialisable ({exc})") from None
        return dict(value)

    def path(self, key: str, *, top: bool = False, required: bool = False) -> Path | None:
        """A file path; relative paths resolve against the model cache (``models_dir()``)."""
        text = self.required_string(key, top=top) if required else self.string(key, top=top)
        if text is None:
            return None
        path = Path(text).expanduser()
        return path if path.is_absolute() else models_dir() / path
