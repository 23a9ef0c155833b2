"""Client disconnect detection for requests that are still waiting (not yet streaming)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

__all__ = ["ClientGone", "DisconnectWatch"]


class ClientGone(Exception):
    """The client closed the connection."""


async def _disconnected(request: Request) -> None:
    # The body has been read already, so the next ASGI message is the disconnect.
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


class DisconnectWatch:
    """Watches one request for its client going away, over all of that request's waits.

    One watcher task serves every wait (the queue, then the backend), started by the first
    wait that does not finish at once. :meth:`close` stops it; call it before the response
    is sent (sending a response may read ``receive`` itself).
    """

    __slots__ = ("_request", "_task")

    def __init__(self, request: Request) -> None:
        self._request = request
        self._task: asyncio.Task[None] | None = None

    async def race(self, awaitable: asyncio.Future[Any]) -> Any:
        """Await ``awaitable``; raise ClientGone the moment the client disconnects first.
        ``awaitable`` is left as it is either way (the caller cancels it if it must)."""
        if awaitable.done():
            return awaitable.result()
        task = self._task
        if task is None:
            task = self._task = asyncio.ensure_future(_disconnected(self._request))
        if not task.done():
            waiter = asyncio.get_running_loop().create_future()

            def wake(_: object) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            awaitable.add_done_callback(wake)
            task.add_done_callback(wake)
            try:
                await waiter
            finally:
                awaitable.remove_done_callback(wake)
                task.remove_done_callback(wake)
        if awaitable.done():
            return awaitable.result()
        raise ClientGone

    def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieve it: a receive that failed means the client is gone
