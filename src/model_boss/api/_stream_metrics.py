"""``metrics`` on the last event of a streamed chat or completion.

The usage event (``stream_options.include_usage``) is the last data event before
``[DONE]``: it is held back until the stream ends and sent with ``metrics`` added, so the
token counts and timings arrive together. A stream without one gets a final event of its
own (``choices: []``, as the usage event has) that carries ``metrics``. Only the first
event and the usage event are parsed; the others pass through as bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from model_boss.api.service import StreamState

__all__ = ["with_metrics"]

_DONE = b"data: [DONE]"
_HEAD_KEYS = ("id", "object", "created", "model")


def _parse(chunk: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(chunk[6:].strip())
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _last(held: dict[str, Any] | None, head: dict[str, Any] | None, state: StreamState) -> bytes:
    last = held if held is not None else {**(head or {}), "choices": []}
    return _event({**last, "metrics": state.metrics()})


async def with_metrics(chunks: AsyncIterator[bytes], state: StreamState) -> AsyncIterator[bytes]:
    head: dict[str, Any] | None = None
    held: dict[str, Any] | None = None
    async for chunk in chunks:
        if chunk.startswith(_DONE):
            yield _last(held, head, state)
            held = None
            head = None
            yield chunk
            continue
        if chunk.startswith(b"data: {"):
            if head is None:
                first = _parse(chunk) or {}
                head = {k: first[k] for k in _HEAD_KEYS if k in first}
            if b'"usage"' in chunk:
                data = _parse(chunk)
                if data is not None and isinstance(data.get("usage"), dict):
                    if held is not None:  # usage on every event: only the last is held
                        yield _event(held)
                    held = data
                    state.usage = data["usage"]
                    continue
        yield chunk
    if held is not None or head is not None:  # the upstream ended without [DONE]
        yield _last(held, head, state)
