"""FastAPI glue: a lifespan that starts and stops your model service, and a health route.

class MyService:
    async def startup(self) -> None:
        self.loader = ManagedModelLoader(idle_timeout_s=300)
        await self.loader.load("chat", "models/chat.gguf")

    async def shutdown(self) -> None:
        await self.loader.close()

app = FastAPI(lifespan=GPULifespanManager(MyService))
add_health_route(app, lambda: app.state.service.loader)
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI

from model_boss.loaders._managed import ManagedModelLoader

__all__ = ["GPULifespanManager", "add_health_route"]


class GPULifespanManager:
    """``FastAPI(lifespan=GPULifespanManager(factory))``: ``factory()`` makes the service
    before the app serves, its ``startup()`` runs (if it has one), the service is put on
    ``app.state.<state_attr>``; on shutdown its ``shutdown()`` runs, also after a failed
    startup's partial work, so leases are released either way."""

    def __init__(self, factory: Callable[[], Any], *, state_attr: str = "service") -> None:
        self.factory = factory
        self.state_attr = state_attr

    def __call__(self, app: FastAPI) -> contextlib.AbstractAsyncContextManager[None]:
        return self._run(app)

    @contextlib.asynccontextmanager
    async def _run(self, app: FastAPI) -> AsyncIterator[None]:
        service = self.factory()
        setattr(app.state, self.state_attr, service)
        try:
            await _maybe_call(service, "startup")
            yield
        finally:
            await _maybe_call(service, "shutdown")


async def _maybe_call(service: Any, name: str) -> None:
    method = getattr(service, name, None)
    if method is None:
        return
    result = method()
    if inspect.isawaitable(result):
        await result


def add_health_route(
    app: FastAPI,
    get_loader: Callable[[], ManagedModelLoader | None],
    *,
    path: str = "/health",
) -> None:
    """``GET /health``: ``{"status": "ok", "model_loaded": bool, "models": [...]}`` where
    ``models`` is each loaded model's status (id, device, MB, lease, use, idle time)."""

    async def health() -> dict[str, Any]:
        try:
            loader = get_loader()
        except AttributeError:  # asked before the lifespan made the service
            loader = None
        models = [] if loader is None else [m.status() for m in loader.loaded]
        return {"status": "ok", "model_loaded": bool(models), "models": models}

    app.add_api_route(path, health, methods=["GET"], include_in_schema=False)
