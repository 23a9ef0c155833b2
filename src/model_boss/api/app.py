"""The coordinator's ASGI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_boss._version import __version__
from model_boss.api.admin import AdminService
from model_boss.api.auth import KeyCheck
from model_boss.api.errors import (
    APIError,
    document_errors,
    error_response,
    install_error_handlers,
)
from model_boss.api.metrics import CoordinatorMetrics
from model_boss.api.routes_admin import router as admin_router
from model_boss.api.routes_dashboard import router as dashboard_router
from model_boss.api.routes_openai import router as openai_router
from model_boss.api.routes_status import router as status_router
from model_boss.api.service import InferenceService
from model_boss.engine import Engine

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DRAIN_LIMIT_BYTES = 256 * 1024 * 1024  # past this, an oversized upload is just cut off


def create_app(
    engine: Engine,
    *,
    api_keys: Sequence[str] = (),
    admin_keys: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    manage_engine: bool = True,
) -> FastAPI:
    """The FastAPI app over ``engine``. With ``manage_engine`` the app's lifespan starts
    and stops the engine (and with it every backend and lease)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_engine:
            await engine.start()
        # Everything made so far (modules, the app, pydantic validators: ~90k objects) lives
        # as long as the server: keep it out of the cyclic collector's full passes, which
        # otherwise walk all of it every few thousand requests (60+ ms pauses under load).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            if manage_engine:
                await engine.stop()

    app = FastAPI(
        title="model-boss coordinator",
        version=__version__,
        description="OpenAI-compatible inference over a shared pool of models and GPUs.",
        lifespan=lifespan,
    )
    service = InferenceService(engine)
    metrics = CoordinatorMetrics(engine)
    service.observers.append(metrics.observe_request)
    service.token_observers.append(metrics.observe_tokens)
    service.first_token_observers.append(metrics.observe_first_token)
    service.dispatch_observers.append(metrics.observe_dispatch)
    app.state.service = service
    app.state.admin = AdminService(engine)
    app.state.metrics = metrics
    app.state.keys = KeyCheck(api_keys, admin_keys)
    install_error_handlers(app)
    document_errors(app)
    app.include_router(openai_router)
    app.include_router(status_router)
    app.include_router(admin_router)
    app.include_router(dashboard_router)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before reading them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await _refuse(scope, receive, send, self.max_bytes)
                    return
        seen = 0
        cut = started = False
        more = True

        async def limited() -> Message:
            # A chunked body has no Content-Length: count it as it arrives, and past the
            # limit tell the app the client is gone (it stops reading), then answer 413.
            nonlocal seen, cut, more
            message = await receive()
            if message["type"] == "http.request":
                more = bool(message.get("more_body", False))
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    cut = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if cut:
                return  # the app's answer to a body we cut off: ours goes out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not cut:
                raise
        if cut and not started:
            # Read what the client is still sending (up to a bound), or it would see the
            # connection reset instead of the answer.
            drained = seen
            while more and drained < DRAIN_LIMIT_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                more = bool(message.get("more_body", False))
                drained += len(message.get("body", b""))
            await _refuse(scope, receive, send, self.max_bytes)


async def _refuse(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
    response = error_response(
        APIError(413, f"request body larger than {max_bytes} bytes", code="body_too_large")
    )
    response.headers["connection"] = "close"
    await response(scope, receive, send)
