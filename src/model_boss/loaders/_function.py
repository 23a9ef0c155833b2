"""FunctionLoader: your own load function, under a lease like any other loader."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from model_boss.loaders._base import Target

__all__ = ["FunctionLoader"]


class FunctionLoader:
    """``load(path, target)`` returns the model (sync functions run in a worker thread);
    ``unload(model)`` lets it go (default: drop the reference). ``estimate_mb``: a number,
    or ``f(path) -> MB``, used when ``load()`` gets no ``vram_mb``."""

    def __init__(
        self,
        load: Callable[[Path | None, Target], Any],
        unload: Callable[[Any], Any] | None = None,
        *,
        kind: str = "function",
        estimate_mb: int | Callable[[Path | None], int | None] | None = None,
    ) -> None:
        self.kind = kind
        self._load = load
        self._unload = unload
        self._estimate = estimate_mb

    def estimate_mb(self, path: Path | None, options: Mapping[str, Any]) -> int | None:
        if self._estimate is None or isinstance(self._estimate, int):
            return self._estimate
        return self._estimate(path)

    async def load(
        self, model_id: str, path: Path | None, target: Target, options: Mapping[str, Any]
    ) -> Any:
        return await _call(self._load, path, target)

    async def unload(self, model: Any) -> None:
        if self._unload is not None:
            await _call(self._unload, model)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    result = await asyncio.to_thread(fn, *args)
    if inspect.isawaitable(result):
        return await result
    return result
