"""The one pooled HTTP client a backend uses to talk to its upstream (aiohttp).

aiohttp was chosen over httpx by measurement (docs/notes/http-client.md): on this
machine it did small POSTs ~2.5x faster one at a time, ~9x faster at 32 concurrent, and
read SSE streams ~2.4x faster.

Streams are yielded as complete SSE events, each the raw bytes the upstream sent
(``data: {...}\\n\\n``), as soon as each event is complete: no buffering beyond one
partial event and no re-serialisation. Closing the iterator early closes the stream's
connection: that is how the upstream learns to stop generating. A stream read to its end
gives its connection back to the pool only with ``pool_streams`` (openai_remote: a new
connection per stream would be a new TCP and TLS handshake); otherwise every stream asks
for ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import orjson
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from yarl import URL

from model_boss.backends._errors import AnswerTooLarge, UpstreamError

__all__ = [
    "RETRY_STATUSES",
    "UpstreamClient",
    "max_answer_bytes",
    "set_max_answer_bytes",
    "split_sse_events",
]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_MAX_ANSWER_BYTES = 16 * 1024 * 1024
_limits = {"answer": DEFAULT_MAX_ANSWER_BYTES}
KEEPALIVE_S = 3.0
_EVENT_END = re.compile(rb"\r?\n\r?\n")


def _dumps(body: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # what orjson refuses (ints over 64 bits, lone surrogates) json takes
        return json.dumps(body).encode()


def set_max_answer_bytes(limit: int) -> None:
    """The most bytes a buffered (non-streamed) answer or one SSE event may have, for every
    client made from now on (the service's ``max_answer_mb``)."""
    if limit < 1:
        raise ValueError(f"the answer limit must be positive, got {limit}")
    _limits["answer"] = limit


def max_answer_bytes() -> int:
    return _limits["answer"]


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # json's verdict (it takes NaN; its error is the same type)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:  # garbage, or nested too deep
            raise UpstreamError(f"the backend's answer is not valid JSON: {exc}"[:300]) from None


def split_sse_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Split ``buffer`` into complete SSE events and the incomplete rest."""
    events: list[bytes] = []
    start = 0
    for match in _EVENT_END.finditer(buffer):
        events.append(buffer[start : match.end()])
        start = match.end()
    return events, buffer[start:]


class UpstreamClient:
    """A keep-alive connection pool to one upstream base URL.

    ``secrets`` are strings (an API key) removed from every error message and body.
    ``retries`` applies to connection failures and to 429/502/503/504 answers that came
    before any byte of a response was handed to the caller. ``pool_streams``: keep the
    connection of a stream that was read to its end (see the module docstring).
    ``max_answer``: the most bytes of a buffered answer, or of one SSE event, that are read
    (default: :func:`max_answer_bytes`); past it :class:`AnswerTooLarge` is raised.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = 600.0,
        connect_timeout_s: float = 10.0,
        max_connections: int = 64,
        retries: int = 0,
        retry_backoff_s: float = 0.5,
        secrets: Sequence[str] = (),
        trust_env: bool = False,
        pool_streams: bool = False,
        max_answer: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_connections = max_connections
        self._retries = retries
        self._retry_backoff_s = retry_backoff_s
        self._secrets = tuple(s for s in secrets if s)
        self._trust_env = trust_env
        self._pool_streams = pool_streams
        self._max_answer = max_answer or max_answer_bytes()
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._via: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"UpstreamClient({self.base_url!r})"

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # llama-server drops idle keep-alive connections after 5 s: never reuse one
            # that old, or the next request fails writing to a closed socket.
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=KEEPALIVE_S
            )
            if self._trust_env:
                self._via = self._from_env()
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    def _from_env(self) -> dict[str, Any]:
        """What aiohttp's ``trust_env`` would look up on every request (a proxy from
        ``*_PROXY``/``NO_PROXY``, basic auth from ``~/.netrc``), looked up once per session:
        aiohttp does both in a worker thread per request, two thread hops on the hot path.
        An ``Authorization`` header (an API key) wins over ``.netrc``."""
        url = URL(self.base_url)
        via: dict[str, Any] = {}
        with contextlib.suppress(LookupError):
            via["proxy"], via["proxy_auth"] = get_env_proxy_for_url(url)
        if url.host is not None and "authorization" not in {h.lower() for h in self._headers}:
            with contextlib.suppress(LookupError):
                via["auth"] = basicauth_from_netrc(netrc_from_env(), url.host)
        return via

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        client_timeout: aiohttp.ClientTimeout,
        *,
        close: bool = False,
    ) -> aiohttp.ClientResponse:
        """Send with retries; returns a 2xx response whose body is not read yet."""
        session = self._get_session()
        url = self.base_url + path
        data = None if body is None else _dumps(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        if close:
            headers["Connection"] = "close"
        attempt = 0
        while True:
            try:
                response = await session.request(
                    method, url, data=data, headers=headers, timeout=client_timeout, **self._via
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt < self._retries:
                    attempt += 1
                    await self._sleep(self._retry_backoff_s * 2 ** (attempt - 1))
                    continue
                reason = self._redact(str(exc) or type(exc).__name__)
                raise UpstreamError(f"{method} {url} failed: {reason}") from None
            if response.status < 400:
                return response
            text = self._redact((await response.read()).decode("utf-8", "replace"))
            response.release()
            if response.status in RETRY_STATUSES and attempt < self._retries:
                attempt += 1
                await self._sleep(self._retry_backoff_s * 2 ** (attempt - 1))
                continue
            raise UpstreamError(
                f"{method} {url} answered {response.status}", status=response.status, body=text
            )

    def _timeout(
        self, timeout_s: float | None, *, streaming: bool = False
    ) -> aiohttp.ClientTimeout:
        seconds = self._timeout_s if timeout_s is None else timeout_s
        if streaming:  # no total limit on a long generation; a stall is what times out
            return aiohttp.ClientTimeout(
                total=None, connect=self._connect_timeout_s, sock_read=seconds
            )
        return aiohttp.ClientTimeout(total=seconds, connect=self._connect_timeout_s)

    async def get_status(self, path: str, *, timeout_s: float = 2.0) -> tuple[int, bytes]:
        """One GET without retries or raising on status: for health and readiness probes."""
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with session.get(self.base_url + path, timeout=timeout, **self._via) as response:
            return response.status, await response.read()

    async def _read(self, response: aiohttp.ClientResponse, path: str) -> bytes:
        """The whole body, read up to the answer limit; past it the connection is closed."""
        limit = self._max_answer
        too_large = AnswerTooLarge(
            f"the backend's answer to {path} is larger than {limit} bytes"
            " (the coordinator's max_answer_mb)"
        )
        if response.content_length is not None and response.content_length > limit:
            response.close()
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                response.close()
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def get_json(self, path: str, *, timeout_s: float | None = None) -> Any:
        response = await self._send("GET", path, None, self._timeout(timeout_s))
        try:
            return _loads(await self._read(response, path))
        finally:
            response.release()

    async def post_json(
        self, path: str, body: Mapping[str, Any], *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        response = await self._send("POST", path, body, self._timeout(timeout_s))
        try:
            raw = await self._read(response, path)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"reading {self.base_url}{path} failed: {exc}") from None
        finally:
            response.release()
        result = _loads(raw)
        if not isinstance(result, dict):
            raise UpstreamError(f"{self.base_url}{path} answered {type(result).__name__}")
        return result

    async def stream(
        self, path: str, body: Mapping[str, Any], *, timeout_s: float | None = None
    ) -> AsyncIterator[bytes]:
        """POST ``body`` and yield the SSE events of the answer as they arrive."""
        timeout = self._timeout(timeout_s, streaming=True)
        response = await self._send("POST", path, body, timeout, close=not self._pool_streams)
        try:
            rest = b""
            async for chunk in response.content.iter_any():
                events, rest = split_sse_events(rest + chunk if rest else chunk)
                for event in events:
                    yield event
                if len(rest) > self._max_answer:
                    raise AnswerTooLarge(
                        f"an event of the backend's stream from {path} is larger than"
                        f" {self._max_answer} bytes (the coordinator's max_answer_mb)"
                    )
            if rest.strip():
                yield rest
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"stream from {self.base_url}{path} broke: {exc}") from None
        finally:
            # A stream read to its end has given its connection back to the pool already
            # (with ``pool_streams``; otherwise it asked for "Connection: close", as
            # llama-server drops it after a stream anyway). A stream the caller left early
            # is closed here, and that close is what stops generation upstream.
            response.close()
