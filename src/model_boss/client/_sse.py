"""Server-sent events, line by line, into JSON objects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from model_boss.client._errors import CoordinatorError, UnexpectedResponse

__all__ = ["DONE", "EventDecoder", "ServerEvent", "event_data"]

#: The data of the event that ends an OpenAI chat or completion stream.
DONE = "[DONE]"


@dataclass(frozen=True, slots=True)
class ServerEvent:
    event: str | None
    data: str


class EventDecoder:
    """Feed it the stream's lines (without their line ends); it returns each complete event."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> ServerEvent | None:
        if not line:
            return self.flush()
        if line.startswith(":"):  # a comment (keep-alive)
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None

    def flush(self) -> ServerEvent | None:
        """The event in progress, if any: call it when the stream ends."""
        if not self._data:
            self._event = None
            return None
        event = ServerEvent(self._event, "\n".join(self._data))
        self._event, self._data = None, []
        return event


def event_data(event: ServerEvent) -> dict[str, Any]:
    """The event's JSON object, with ``type`` from the event name when the data lacks it.

    An error event (``{"error": {...}}`` or ``{"type": "error", ...}``) raises
    :class:`CoordinatorError` with status 502: the backend failed after the stream began.
    """
    try:
        data: Any = json.loads(event.data)
    except ValueError:
        raise UnexpectedResponse(f"a streamed event is not JSON: {event.data[:200]!r}") from None
    if not isinstance(data, dict):
        raise UnexpectedResponse(f"a streamed event is not a JSON object: {event.data[:200]!r}")
    if event.event and "type" not in data:
        data["type"] = event.event
    error = data.get("error")
    if data.get("type") == "error" or (isinstance(error, dict) and "choices" not in data):
        details = error if isinstance(error, dict) else data
        raise CoordinatorError(
            502,
            str(details.get("message") or "the stream failed"),
            code=_opt(details.get("code")),
            type=_opt(details.get("type")) if details is error else None,
            param=_opt(details.get("param")),
        )
    return data


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)
