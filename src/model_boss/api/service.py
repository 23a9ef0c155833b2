"""The inference service: everything between a validated request and the backend.

Routers call :class:`InferenceService`; it checks the model and its modalities, reads
the queue fields, queues the request in the engine, waits for a slot while watching the
client, calls the backend, and adds the timing metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from model_boss.api._disconnect import ClientGone, DisconnectWatch
from model_boss.api._forwarded import NO_CONTEXT_BOUND, check_forwarded
from model_boss.api._sse import EventStreamResponse
from model_boss.api._stream_metrics import with_metrics
from model_boss.api.errors import APIError, error_body, public
from model_boss.api.protocol import X_FIELDS, QueueFields
from model_boss.backends import (
    AnswerTooLarge,
    Backend,
    BackendError,
    UnsupportedOperation,
    UpstreamError,
)
from model_boss.config import DEFAULT_CONTEXT
from model_boss.engine import Engine, EngineModel, RequestRejected, Ticket
from model_boss.priority import parse_priority

__all__ = ["CallResult", "InferenceService", "RequestContext", "StreamState"]

STRIP = (*X_FIELDS, "allow_remote")


@dataclass(slots=True)
class RequestContext:
    model: EngineModel
    client: str
    priority: int
    stay_warm_s: float | None
    cooldown_s: float
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class CallResult:
    body: dict[str, Any]
    metrics: dict[str, Any]


@dataclass(slots=True)
class StreamState:
    """One stream's timings and usage, for a ``wrap`` that reports metrics at its end.

    It holds what :meth:`metrics` needs rather than a closure over itself: a cycle would
    leave every finished stream to the cyclic garbage collector (long pauses under load).
    """

    started: float
    first_at: float = 0.0
    usage: Any = None
    service: InferenceService | None = None
    ctx: RequestContext | None = None
    ticket: Ticket | None = None

    def metrics(self) -> dict[str, Any]:
        if self.service is None or self.ctx is None or self.ticket is None:
            return {}
        took = time.perf_counter() - self.started
        return self.service.metrics(self.ctx, self.ticket, took, self.usage) | {
            "gpu_time_to_first_token_ms": round((self.first_at - self.started) * 1000, 3)
        }


@dataclass(slots=True)
class ClientStats:
    requests: int = 0
    errors: int = 0
    rejected: int = 0
    cancelled: int = 0
    last_seen: float = 0.0
    last_priority: int = 10
    models: dict[str, int] = field(default_factory=dict)


def _has_image(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "input_image"):
                    return True
        elif isinstance(message, dict) and message.get("type") in ("image_url", "input_image"):
            return True
    return False


class InferenceService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.started_at = time.time()
        self.dispatch_observers: list[Callable[[int, float], None]] = []
        self.clients: dict[str, ClientStats] = {}
        self.observers: list[Callable[[str, str, float, bool], None]] = []
        # (model, prompt tokens, completion tokens) of each answer that says its usage
        self.token_observers: list[Callable[[str, int, int], None]] = []
        # (model, seconds from arrival to the first event) of each stream
        self.first_token_observers: list[Callable[[str, float], None]] = []

    # -- admission --------------------------------------------------------------------------

    def context(
        self, request: Request, parsed: QueueFields, model_id: str, *, images: bool = False
    ) -> RequestContext:
        model = self.engine.models.get(model_id)
        if model is None or not self.engine.serves(model_id):
            raise APIError(
                404, f"the model {model_id!r} does not exist", code="model_not_found", param="model"
            )
        if model.backend == "openai_remote" and not parsed.allow_remote:
            raise APIError(
                403,
                f"{model_id!r} is a remote model: set allow_remote: true to use it",
                code="remote_not_allowed",
                param="allow_remote",
            )
        if images and "image" not in model.modalities:
            raise APIError(
                400,
                f"the model {model_id!r} does not accept image input",
                code="modality_unsupported",
                param="messages",
            )
        client = parsed.x_client_id or request.headers.get("x-client-id") or "anonymous"
        raw_priority: Any = parsed.x_priority
        if raw_priority is None:
            raw_priority = request.headers.get("x-priority") or "normal"
        try:
            priority = parse_priority(raw_priority)
        except ValueError as exc:
            raise APIError(400, str(exc), code="invalid_priority", param="x_priority") from None
        return RequestContext(
            model=model,
            client=client[:200],
            priority=priority,
            stay_warm_s=parsed.x_stay_warm,
            cooldown_s=parsed.x_cooldown or 0.0,
        )

    @staticmethod
    def strip_queue_fields(body: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k not in STRIP}

    def forward_body(self, body: Mapping[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """What reaches the backend: queue fields stripped, the rest checked against what
        the model's backend kind accepts (see ``_forwarded``); a bad value is a 400."""
        model = ctx.model
        return check_forwarded(
            model.backend, self.strip_queue_fields(body), self._context(model.model_id)
        )

    def _context(self, model_id: str) -> int:
        model = self.engine.models[model_id]
        if model.backend not in ("llama_server", "vllm_serve"):
            return NO_CONTEXT_BOUND
        entry = {**model.entry, **self.engine.overrides(model_id)}
        table = entry.get("vllm_serve") if model.backend == "vllm_serve" else None
        size = entry.get("context_size") or (table or {}).get("max_model_len")
        return size if isinstance(size, int) and size > 0 else DEFAULT_CONTEXT

    @staticmethod
    def check_images(body: Mapping[str, Any]) -> bool:
        return _has_image(body.get("messages")) or _has_image(body.get("input"))

    def _stats(self, ctx: RequestContext) -> ClientStats:
        stats = self.clients.get(ctx.client)
        if stats is None:
            stats = self.clients[ctx.client] = ClientStats()
        stats.requests += 1
        stats.last_seen = time.time()
        stats.last_priority = ctx.priority
        stats.models[ctx.model.model_id] = stats.models.get(ctx.model.model_id, 0) + 1
        return stats

    async def acquire(
        self, request: Request, ctx: RequestContext, watch: DisconnectWatch | None = None
    ) -> tuple[Ticket, Backend]:
        """Queue the request and wait for a slot; leave the queue if the client goes away.
        With ``watch`` (the caller closes it) the caller's later waits share its watcher."""
        if watch is None:
            watch = DisconnectWatch(request)
            try:
                return await self.acquire(request, ctx, watch)
            finally:
                watch.close()
        stats = self._stats(ctx)
        ticket = self.engine.submit(
            ctx.model.model_id,
            priority=ctx.priority,
            client=ctx.client,
            stay_warm_s=ctx.stay_warm_s,
            cooldown_s=ctx.cooldown_s,
        )
        try:
            backend: Backend = await watch.race(ticket.future)
        except ClientGone:
            stats.cancelled += 1
            self.engine.cancel(ticket)
            raise APIError(499, "the client closed the request", code="client_closed") from None
        except RequestRejected as exc:
            stats.rejected += 1
            raise APIError(
                exc.status,
                public(exc.reason),
                code=_reject_code(exc.status),
                retry_after_s=exc.retry_after_s,
            ) from None
        except asyncio.CancelledError:
            self.engine.cancel(ticket)
            raise
        wait_s = ticket.timings(self.engine.now())["queue_wait_s"]
        for observer in self.dispatch_observers:
            observer(ctx.priority, wait_s)
        return ticket, backend

    # -- calls ------------------------------------------------------------------------------

    async def call(
        self,
        request: Request,
        ctx: RequestContext,
        invoke: Callable[[Backend], Awaitable[dict[str, Any]]],
    ) -> CallResult:
        watch = DisconnectWatch(request)
        try:
            ticket, backend = await self.acquire(request, ctx, watch)
            t0 = time.perf_counter()
            ok = gone = False
            try:
                task = asyncio.ensure_future(invoke(backend))
                try:
                    body: dict[str, Any] = await watch.race(task)
                except ClientGone:
                    gone = True
                    task.cancel()
                    self.engine.cancel(ticket)  # aborts upstream, frees the slot
                    raise
                ok = True
            except BaseException as exc:
                raise _as_api_error(exc, ticket) from None
            finally:
                self.engine.finish(ticket, ok)
                self._observe(ctx, ok)
                if gone:
                    self.clients[ctx.client].cancelled += 1
                elif not ok:
                    self.clients[ctx.client].errors += 1
        finally:
            watch.close()
        backend_s = time.perf_counter() - t0
        self._observe_tokens(ctx, body.get("usage"))
        return CallResult(body, self.metrics(ctx, ticket, backend_s, body.get("usage")))

    async def open_stream(
        self,
        request: Request,
        ctx: RequestContext,
        open_chunks: Callable[[Backend], AsyncIterator[bytes]],
        wrap: Callable[[AsyncIterator[bytes], StreamState], AsyncIterator[bytes]] | None = None,
    ) -> Response:
        """Queue, then open the backend stream and wait for its first event before answering,
        so that an upstream error still gets a proper status. Then pass the events through
        as they come. If the client goes away, the body is cancelled: the upstream stream is
        closed (generation stops) and the slot is freed. An upstream failure mid-stream
        ends the stream with an error event in the OpenAI shape."""
        watch = DisconnectWatch(request)
        try:
            ticket, backend = await self.acquire(request, ctx, watch)
            state = StreamState(started=time.perf_counter())
            chunks: AsyncIterator[bytes] | None = None
            first_task: asyncio.Future[bytes] | None = None
            try:
                chunks = open_chunks(backend)  # may raise at once (unsupported, not running)
                first_task = asyncio.ensure_future(anext(chunks))
                first = await watch.race(first_task)
            except StopAsyncIteration:
                first = b""
            except BaseException as exc:
                await self._abandon(ctx, ticket, chunks, first_task, exc)
                raise _as_api_error(exc, ticket) from None
        finally:
            watch.close()
        assert chunks is not None
        stream: AsyncIterator[bytes] = chunks
        state.first_at = time.perf_counter()
        for first_token in self.first_token_observers:
            first_token(ctx.model.model_id, state.first_at - ctx.started)
        service = self
        responses = wrap is not None
        events = wrap if wrap is not None else with_metrics

        async def passthrough() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for chunk in stream:
                yield chunk

        async def body() -> AsyncIterator[bytes]:
            ok = False
            source = passthrough()
            try:
                try:
                    async for chunk in events(source, state):
                        if b'"usage"' in chunk and chunk.startswith(b"data: {"):
                            state.usage = _usage_of(chunk) or state.usage
                        yield chunk
                    ok = True
                except (BackendError, OSError) as exc:  # the upstream broke off mid-stream
                    yield _error_event(_as_api_error(exc, ticket), responses)
            finally:
                await _close(stream)
                service.engine.finish(ticket, ok)
                service._observe(ctx, ok)
                service._observe_tokens(ctx, state.usage)

        state.service, state.ctx, state.ticket = self, ctx, ticket
        return EventStreamResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _abandon(
        self,
        ctx: RequestContext,
        ticket: Ticket,
        chunks: AsyncIterator[bytes] | None,
        first_task: asyncio.Future[bytes] | None,
        exc: BaseException,
    ) -> None:
        """A stream that failed (or whose client left) before its first event: stop reading,
        close the upstream, and free the slot whatever happens while closing."""
        try:
            if first_task is not None and not first_task.done():
                first_task.cancel()
                await asyncio.wait({first_task})
            if chunks is not None:
                with contextlib.suppress(Exception):  # must not keep the slot busy
                    await _close(chunks)
        finally:
            if isinstance(exc, (ClientGone, asyncio.CancelledError)):
                self.engine.cancel(ticket)
                self.clients[ctx.client].cancelled += 1
            else:
                self.engine.finish(ticket, False)
                self.clients[ctx.client].errors += 1
            self._observe(ctx, False)

    def _observe(self, ctx: RequestContext, ok: bool) -> None:
        elapsed = time.perf_counter() - ctx.started
        for observer in self.observers:
            observer(ctx.model.model_id, ctx.client, elapsed, ok)

    def _observe_tokens(self, ctx: RequestContext, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        output = usage.get("completion_tokens", usage.get("output_tokens"))
        counts = [n if isinstance(n, int) else 0 for n in (prompt, output)]
        for observer in self.token_observers:
            observer(ctx.model.model_id, counts[0], counts[1])

    def metrics(
        self, ctx: RequestContext, ticket: Ticket, backend_s: float, usage: Any
    ) -> dict[str, Any]:
        waits = ticket.timings(self.engine.now())
        total_s = time.perf_counter() - ctx.started
        prompt = output = None
        if isinstance(usage, dict):
            prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
            output = usage.get("completion_tokens", usage.get("output_tokens"))
        return {
            "engine_queue_wait_ms": round(waits["queue_wait_s"] * 1000, 3),
            "engine_load_wait_ms": round(waits["load_wait_s"] * 1000, 3),
            "backend_inference_wall_ms": round(backend_s * 1000, 3),
            "engine_total_wall_ms": round((backend_s + waits["queue_wait_s"]) * 1000, 3),
            "engine_outside_backend_wall_ms": round(max(0.0, total_s - backend_s) * 1000, 3),
            "pool_total_wall_ms": round(total_s * 1000, 3),
            "engine_prompt_tokens": prompt,
            "engine_output_tokens": output,
            "engine_tokens_per_second": (
                round(output / backend_s, 2) if isinstance(output, int) and backend_s > 0 else None
            ),
        }


def _as_api_error(exc: BaseException, ticket: Ticket | None = None) -> BaseException:
    if ticket is not None and ticket.error is not None and isinstance(exc, Exception):
        # The coordinator stopped the backend under this request (it used more memory
        # than its lease): say why, not how the connection broke.
        stopped = ticket.error
        return APIError(stopped.status, stopped.reason, code="backend_stopped")
    if isinstance(exc, ClientGone):
        return APIError(499, "the client closed the request", code="client_closed")
    if isinstance(exc, (UnsupportedOperation, NotImplementedError)):
        return APIError(400, str(exc), code="unsupported_operation")
    if isinstance(exc, UpstreamError):
        if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
            # The request itself was refused upstream (e.g. context exceeded): the
            # client's fault, so not a 5xx that clients would retry.
            return APIError(exc.status, public(_upstream_message(exc)), code="upstream_rejected")
        if isinstance(exc, AnswerTooLarge):
            return APIError(502, public(str(exc)), code="answer_too_large")
        return APIError(502, f"the backend failed: {public(str(exc))}", code="backend_error")
    if isinstance(exc, BackendError):
        return APIError(
            503, f"the backend is not available: {public(str(exc))}", code="backend_error"
        )
    if isinstance(exc, OSError):
        return APIError(
            502, f"the backend connection failed: {public(str(exc))}", code="backend_error"
        )
    return exc


def _upstream_message(exc: UpstreamError) -> str:
    try:
        data = orjson.loads(exc.body)
    except orjson.JSONDecodeError:
        return exc.body[:2000] or str(exc)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return exc.body[:2000]


def _error_event(exc: BaseException, responses: bool) -> bytes:
    """The last event of a stream that broke off: OpenAI's error shape (chat and
    completions streams), or a Responses ``error`` event."""
    status = exc.status if isinstance(exc, APIError) else 502
    message = exc.message if isinstance(exc, APIError) else str(exc)
    code = exc.code if isinstance(exc, APIError) else "backend_error"
    if responses:
        data = {"type": "error", "code": code, "message": message, "param": None}
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"
    return b"data: " + orjson.dumps(error_body(status, message, code)) + b"\n\n"


def _reject_code(status: int) -> str:
    return {
        404: "model_not_found",
        409: "model_disabled",
        429: "queue_full",
        503: "model_unavailable",
        507: "model_too_large",
    }.get(status, "rejected")


def _usage_of(chunk: bytes) -> Any:
    try:
        data = orjson.loads(chunk[6:].strip())
    except orjson.JSONDecodeError:
        return None
    return data.get("usage") if isinstance(data, dict) else None


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
