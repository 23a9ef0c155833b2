"""Where model-boss keeps binaries and models, and how the llama-server binary is found."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from model_boss.backends._errors import BackendStartError

__all__ = ["LLAMA_SERVER_ENV", "cache_root", "find_llama_server", "models_dir"]

LLAMA_SERVER_ENV = "MODEL_BOSS_LLAMA_SERVER"


def cache_root() -> Path:
    """``$MODEL_BOSS_CACHE``, else ``$XDG_CACHE_HOME/model-boss``, else ``~/.cache/model-boss``."""
    explicit = os.environ.get("MODEL_BOSS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "model-boss"


def models_dir() -> Path:
    """Where fetched models live; relative manifest paths resolve against it."""
    return cache_root() / "models"


def find_llama_server() -> Path:
    """The llama-server binary: ``$MODEL_BOSS_LLAMA_SERVER``, then the cache, then PATH."""
    explicit = os.environ.get(LLAMA_SERVER_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BackendStartError(f"{LLAMA_SERVER_ENV}={explicit} is not an executable file")
        return path
    cached = cache_root() / "bin" / "llama-server"
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    found = shutil.which("llama-server")
    if found:
        return Path(found)
    raise BackendStartError(
        f"no llama-server binary: not in ${LLAMA_SERVER_ENV}, not at {cached}, not on PATH."
        " Build one with scripts/build-llama-server.sh (or `make setup`)."
    )
