"""A real coordinator (uvicorn over simulated backends) for the SDK and CLI tests.

``coordinator`` serves on the test's own event loop, for the async client. The sync
client and the CLI block the thread they run on, so :class:`ThreadedServer` serves on a
background thread with its own event loop instead.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import pytest

from model_boss import Device, GPUBoss
from model_boss.client import InferenceClient
from model_boss.engine import Engine, EngineModel, SlotLedger
from model_boss.scheduling import SchedulerConfig
from tests.api.conftest import Server, sim_model

T = TypeVar("T")


def default_models() -> list[EngineModel]:
    return [sim_model("a"), sim_model("b"), sim_model("vision", modalities=("text", "image"))]


def engine_with(models: Sequence[EngineModel], capacity_mb: int = 10_000, **config: Any) -> Engine:
    """Like ``tests.api.conftest.make_engine``, with scheduler settings (``max_queue=0``...)."""
    boss = GPUBoss(f"memory://client-{secrets.token_hex(4)}", [Device(0, capacity_mb)], host="t")
    settings = SchedulerConfig(**{"batch_window_s": 0.0, **config})
    return Engine(list(models), SlotLedger(boss, None), config=settings)


@pytest.fixture
async def coordinator() -> AsyncIterator[Server]:
    async with Server(engine_with(default_models())) as srv:
        yield srv


@pytest.fixture
async def client(coordinator: Server) -> AsyncIterator[InferenceClient]:
    async with InferenceClient(coordinator.url, client_id="tests") as c:
        yield c


class ThreadedServer:
    """``with ThreadedServer(models) as srv:`` serves the coordinator at ``srv.url`` from a
    background thread; ``srv.call(coro)`` runs a coroutine on that thread's loop."""

    def __init__(
        self,
        models: Sequence[EngineModel] | None = None,
        *,
        config: dict[str, Any] | None = None,
        **app_kwargs: Any,
    ) -> None:
        self._models = list(models) if models is not None else default_models()
        self._config = config or {}
        self._app_kwargs = app_kwargs
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="coordinator", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        engine = engine_with(self._models, **self._config)
        async with Server(engine, **self._app_kwargs) as srv:
            self.server = srv
            self._ready.set()
            await self._stop.wait()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the coordinator thread did not start within 30 s")
        if self._error is not None:
            raise RuntimeError("the coordinator thread failed") from self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._thread.is_alive():
            raise RuntimeError("the coordinator thread did not stop within 30 s")
        if self._error is not None:
            raise RuntimeError("the coordinator thread failed") from self._error


@pytest.fixture
def threaded_coordinator() -> Iterator[ThreadedServer]:
    with ThreadedServer() as srv:
        yield srv
