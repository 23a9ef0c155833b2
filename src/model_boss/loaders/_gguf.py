"""GGUF models through llama.cpp: a ``llama-server`` child process owned by your program.

The loader runs llama.cpp's own server (the supervised ``llama_server`` backend: its own
process group, killed with your process) on the leased GPU (``CUDA_VISIBLE_DEVICES``) or
on the CPU, and hands back a :class:`GGUFModel` with ``chat``, ``complete``, ``embed`` and
``stream_chat``. Options are the manifest's: ``context_size``, ``chat_template``, and a
``llama_server`` table (``threads``, ``n_gpu_layers``, ``embeddings``, ``binary``...).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from model_boss.backends import Backend, create_backend
from model_boss.config import estimate_vram_mb
from model_boss.loaders._base import Target

__all__ = ["GGUFLoader", "GGUFModel"]

Messages = Sequence[Mapping[str, Any]]


class GGUFModel:
    """A loaded GGUF model: OpenAI-shaped calls against its own llama-server."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for an OpenAI client of your own."""
        port = self.backend.status().get("port")
        return f"http://127.0.0.1:{port}/v1"

    @property
    def api_key(self) -> str | None:
        """The key llama-server asks for at :attr:`base_url` (a new one at each load)."""
        key = getattr(self.backend, "api_key", None)
        return None if key is None else str(key)

    async def chat_completion(self, messages: Messages, **params: Any) -> dict[str, Any]:
        """The whole OpenAI chat completion object."""
        return await self.backend.chat({**params, "messages": list(messages)})

    async def chat(self, messages: Messages, **params: Any) -> str:
        """The assistant's answer text."""
        out = await self.chat_completion(messages, **params)
        return str(out["choices"][0]["message"].get("content") or "")

    async def stream_chat(self, messages: Messages, **params: Any) -> AsyncIterator[str]:
        """The answer's text pieces as they are generated."""
        async for event in self.backend.chat_stream({**params, "messages": list(messages)}):
            for line in event.decode("utf-8", "replace").splitlines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if not data or data == "[DONE]":
                    continue
                chunk = json.loads(data)
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield str(piece)

    async def complete(self, prompt: str, **params: Any) -> str:
        """Plain completion of ``prompt``."""
        out = await self.backend.completions({**params, "prompt": prompt})
        return str(out["choices"][0].get("text") or "")

    async def embed(self, texts: str | Sequence[str]) -> list[list[float]]:
        """One vector per text (the model must be loaded with ``embeddings: true``)."""
        inputs = [texts] if isinstance(texts, str) else list(texts)
        out = await self.backend.embeddings({"input": inputs})
        rows = sorted(out["data"], key=lambda row: int(row.get("index", 0)))
        return [[float(x) for x in row["embedding"]] for row in rows]


class GGUFLoader:
    kind = "gguf"

    def __init__(
        self,
        *,
        binary: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.binary = binary
        self.log_dir = log_dir

    def estimate_mb(self, path: Path | None, options: Mapping[str, Any]) -> int | None:
        """Weights plus the KV cache for ``context_size`` (from the GGUF metadata)."""
        if path is None or not path.is_file():
            return None
        server = options.get("llama_server") or {}
        return estimate_vram_mb(
            path,
            context_size=options.get("context_size"),
            cache_type_k=str(server.get("cache_type_k", "f16")),
            cache_type_v=str(server.get("cache_type_v", "f16")),
        )

    async def load(
        self, model_id: str, path: Path | None, target: Target, options: Mapping[str, Any]
    ) -> GGUFModel:
        if path is None:
            raise ValueError("the gguf loader needs the path of a .gguf file")
        server = dict(options.get("llama_server") or {})
        if self.binary is not None:
            server.setdefault("binary", str(self.binary))
        entry: dict[str, Any] = {"path": str(path), "llama_server": server}
        for key in ("context_size", "chat_template"):
            if options.get(key) is not None:
                entry[key] = options[key]
        gpus = [target.gpu_index] if target.gpu_index is not None else []
        backend = create_backend(
            "llama_server",
            model_id,
            entry,
            gpus=gpus,
            log_dir=self.log_dir,
            budget=target.budget if target.mb > 0 else None,
        )
        await backend.start()  # stops what it started if it fails or is cancelled
        return GGUFModel(backend)

    async def unload(self, model: Any) -> None:
        if isinstance(model, GGUFModel):
            await model.backend.stop()
