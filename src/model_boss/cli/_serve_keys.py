"""Where ``model-boss serve`` takes its bearer keys from, without putting them on argv.

Each kind (API, admin) comes from the command line (``--api-key KEY``, repeatable, seen by
every user in ``ps``; ``--api-key-file PATH``) or, when the command line names none, from
the environment (``MODEL_BOSS_API_KEYS``, comma-separated; ``MODEL_BOSS_API_KEYS_FILE``).
A key file holds one key per line; blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_boss.errors import ConfigError

__all__ = ["KEY_KINDS", "add_key_arguments", "read_key_file", "service_keys"]

log = logging.getLogger("model_boss.cli")


@dataclass(frozen=True)
class _KeyKind:
    flag: str  # --api-key; its file flag is --api-key-file
    env: str  # MODEL_BOSS_API_KEYS; its file variable is MODEL_BOSS_API_KEYS_FILE
    what: str

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


KEY_KINDS = (
    _KeyKind("--api-key", "MODEL_BOSS_API_KEYS", "accept this bearer key"),
    _KeyKind("--admin-key", "MODEL_BOSS_ADMIN_KEYS", "admin bearer key"),
)


def add_key_arguments(parser: Any) -> None:
    for kind in KEY_KINDS:
        parser.add_argument(
            kind.flag,
            action="append",
            default=None,
            help=f"{kind.what} (repeatable; visible in `ps`: prefer {kind.flag}-file)",
        )
        parser.add_argument(
            f"{kind.flag}-file",
            action="append",
            default=None,
            metavar="PATH",
            help=f"read {kind.what}s from PATH, one a line (repeatable; default:"
            f" {kind.env}_FILE, else {kind.env}, comma-separated)",
        )


def read_key_file(path: str | os.PathLike[str]) -> list[str]:
    """The keys in a key file (raises ConfigError naming the file)."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
        mode = file.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the key file {file}: {exc}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("the key file %s is readable by other users (chmod 600 it)", file)
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise ConfigError(f"the key file {file} holds no key")
    return keys


def _keys(args: argparse.Namespace, kind: _KeyKind, env: Mapping[str, str]) -> list[str]:
    given: list[str] = list(getattr(args, kind.dest) or [])
    for path in getattr(args, f"{kind.dest}_file") or []:
        given += read_key_file(path)
    if given:
        return given
    from_env = [k.strip() for k in env.get(kind.env, "").split(",") if k.strip()]
    file = env.get(f"{kind.env}_FILE", "").strip()
    return from_env + (read_key_file(file) if file else [])


def service_keys(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """The (API keys, admin keys) that ``serve`` accepts."""
    environ = os.environ if env is None else env
    api, admin = (_keys(args, kind, environ) for kind in KEY_KINDS)
    return api, admin
