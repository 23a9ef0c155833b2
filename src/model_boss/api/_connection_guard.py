"""Connection limits for the coordinator's HTTP server (uvicorn).

uvicorn closes a keep-alive connection that stays idle after a response
(``timeout_keep_alive``), but a connection that never sends a complete request head is
never closed, and it accepts connections until the process runs out of file descriptors:
then every request fails, with nothing logged. :func:`guarded_protocol` wraps uvicorn's
HTTP protocol with two limits:

- **a connection cap**: at ``max_connections`` open connections, a new one takes the place
  of the connection idle longest (one waiting for a request head, first or next); when none
  is idle (every one is being served) the new one is answered ``503`` with ``Retry-After``
  and closed at once. A warning is logged when the cap is hit (at most once per
  ``_LOG_EVERY_S``, with the counts so far). So a flood of idle connections cycles through
  the cap while real requests, whose heads come at once, are served;
- **a header timeout**: a connection must deliver a complete request head within
  ``header_timeout_s`` of opening or of its previous response, or it is closed. A request
  in progress (its head read) is never cut by it.

The listen ``backlog`` (connections the kernel queues before they are accepted; Linux caps
it at ``net.core.somaxconn``) and uvicorn's own keep-alive timeout are passed through.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["ConnectionLimits", "fit_to_file_limit", "guarded_protocol", "uvicorn_options"]

log = logging.getLogger("model_boss.api.connections")

_LOG_EVERY_S = 10.0
_FILES_KEPT = 128  # descriptors left for everything but client connections
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 109\r\n\r\n"
    b'{"error":{"message":"too many open connections; retry shortly",'
    b'"type":"server_error","code":"too_many_connections"}}'
)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    backlog: int = 2048
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0


def fit_to_file_limit(limits: ConnectionLimits) -> ConnectionLimits:
    """Raise the soft open-files limit to the hard one, then lower ``max_connections`` (with
    a warning) if the cap would still run the process out of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or limits.max_connections + _FILES_KEPT <= soft:
        return limits
    cap = max(16, soft - _FILES_KEPT)
    log.warning(
        "max_connections %d does not fit the open-files limit %d; capping connections at %d",
        limits.max_connections,
        soft,
        cap,
    )
    return ConnectionLimits(cap, limits.backlog, limits.header_timeout_s, limits.keep_alive_s)


class _AtCap:
    """What happened at the cap; logs the first of a burst, then every few seconds."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.closed_idle = 0
        self.refused = 0
        self._logged_at: float | None = None

    def note(self, *, refused: bool) -> None:
        if refused:
            self.refused += 1
        else:
            self.closed_idle += 1
        now = time.monotonic()
        if self._logged_at is not None and now - self._logged_at < _LOG_EVERY_S:
            return
        self._logged_at = now
        log.warning(
            "connection cap reached: %d connections open (max_connections); a new one"
            " replaces the longest idle, or is answered 503 when none is idle"
            " (so far %d idle closed, %d refused)",
            self.cap,
            self.closed_idle,
            self.refused,
        )


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with the connection cap and header timeout."""
    base: type[Any] = AutoHTTPProtocol
    at_cap = _AtCap(limits.max_connections)
    idle: dict[Any, None] = {}  # connections waiting for a request head, oldest first

    class GuardedHTTPProtocol(base):  # type: ignore[misc]
        _refused = False
        _head_timer: asyncio.TimerHandle | None = None
        _armed_for: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            if len(self.server_state.connections) >= limits.max_connections:
                oldest = next((c for c in idle if c._waiting()), None)
                if oldest is not None:
                    oldest._close_idle()
                    at_cap.note(refused=False)
                else:
                    self._refused = True
                    at_cap.note(refused=True)
                    transport.write(_REFUSAL)
                    transport.close()
                    return
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_timer is not None and self.cycle is not self._armed_for:
                self._disarm()  # a new request's head is complete

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._armed_for = self.cycle
            self._head_timer = self.loop.call_later(limits.header_timeout_s, self._head_timeout)
            if self._waiting():
                idle[self] = None

        def _disarm(self) -> None:
            idle.pop(self, None)
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _waiting(self) -> bool:
            """No request is being served: it waits for a request head."""
            cycle = self.cycle
            return cycle is None or bool(cycle.response_complete)

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self._waiting():
                self._close_idle()
            else:
                idle.pop(self, None)  # a pipelined request is being served

        def _close_idle(self) -> None:
            self._disarm()
            self.server_state.connections.discard(self)  # gone now, whenever the loop reaps it
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedHTTPProtocol


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config``."""
    return {
        "http": guarded_protocol(limits),
        "backlog": limits.backlog,
        "timeout_keep_alive": max(1, round(limits.keep_alive_s)),
    }
