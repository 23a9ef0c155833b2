"""Client disconnect detection for requests that are still waiting (not yet streaming)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

__all__ = ["race_disconnect"]


class ClientGone(Exception):
    """The client closed the connection."""


async def _disconnected(request: Request) -> None:
    # The body has been read already, so the next ASGI message is the disconnect.
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


async def race_disconnect(request: Request, awaitable: asyncio.Future[Any]) -> Any:
    """Await ``awaitable``; raise ClientGone the moment the client disconnects first."""
    if awaitable.done():
        return awaitable.result()
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({awaitable, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if awaitable in done:
        return awaitable.result()
    raise ClientGone
