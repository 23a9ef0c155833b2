"""Which loader a model gets: by name, by the manifest's backend, or from its path."""

from __future__ import annotations

import os
from pathlib import Path

from model_boss.loaders._base import Loader, UnknownLoader

__all__ = ["KINDS", "kind_from_path", "loader_for", "loader_kind_for_backend"]

KINDS = ("gguf", "diffusers", "hf", "onnx")

#: Manifest backends whose models a program can load itself, and the loader for each.
_BACKEND_KINDS = {"llama_server": "gguf", "llama-server": "gguf", "diffusers": "diffusers"}


def kind_from_path(path: Path | None) -> str:
    """``gguf`` for ``*.gguf``, ``onnx`` for ``*.onnx``, ``diffusers`` for a directory with
    ``model_index.json``, ``hf`` for a directory with ``config.json``."""
    if path is None:
        raise UnknownLoader("no path and no loader: say which loader (gguf, diffusers, hf, onnx)")
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        return "gguf"
    if suffix == ".onnx":
        return "onnx"
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return "diffusers"
        if (path / "config.json").is_file():
            return "hf"
    if not path.exists():
        raise UnknownLoader(f"{path}: no such file or directory")
    raise UnknownLoader(
        f"{path}: cannot tell the loader from the path; pass loader= (one of {', '.join(KINDS)})"
    )


def loader_kind_for_backend(backend: str, model_id: str) -> str:
    try:
        return _BACKEND_KINDS[backend]
    except KeyError:
        raise UnknownLoader(
            f"model {model_id!r} runs on the {backend} backend, which a program cannot load "
            "itself; ask the coordinator for it, or pass path= and loader="
        ) from None


def loader_for(
    kind: str | None, path: Path | None, *, log_dir: str | os.PathLike[str] | None = None
) -> Loader:
    """A fresh loader of ``kind`` (told from ``path`` when None)."""
    name = kind if kind is not None else kind_from_path(path)
    if name == "gguf":
        from model_boss.loaders._gguf import GGUFLoader

        return GGUFLoader(log_dir=log_dir)
    if name == "diffusers":
        from model_boss.loaders._diffusers import DiffusersLoader

        return DiffusersLoader()
    if name == "hf":
        from model_boss.loaders._hf import HFModelLoader

        return HFModelLoader()
    if name == "onnx":
        from model_boss.loaders._onnx import ONNXLoader

        return ONNXLoader()
    raise UnknownLoader(f"unknown loader {name!r} (known: {', '.join(KINDS)})")
