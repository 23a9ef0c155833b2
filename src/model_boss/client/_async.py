"""The asynchronous client: :class:`InferenceClient`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from model_boss.client._calls import Call, Calls, EmbeddingInput, listed
from model_boss.client._errors import (
    error_from_answer,
    error_from_transport,
    json_answer,
    list_field,
)
from model_boss.client._settings import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_TIMEOUT_S, Settings
from model_boss.client._sse import DONE, EventDecoder, event_data

__all__ = ["InferenceClient"]


class InferenceClient:
    """Talks to a model-boss coordinator over HTTP (``async with InferenceClient() as c:``).

    ``base_url`` defaults to ``$MODEL_BOSS_URL``, then ``$COORDINATOR_URL``, then
    ``http://localhost:8210``; ``api_key`` to ``$MODEL_BOSS_API_KEY``. ``timeout`` is the
    read timeout in seconds (None: wait forever), generous because a request may wait in
    the queue and for its model to load. ``client_id`` is the default ``x_client_id``.

    Inference methods take the OpenAI fields as keyword arguments (``max_tokens=64``,
    ``temperature=0``...) and the queue fields ``x_client_id``, ``x_priority``
    (``"urgent"``, ``"high"``, ``"normal"``, ``"low"``, ``"batch"`` or an int),
    ``x_stay_warm`` and ``x_cooldown`` (seconds). A keyword set to None is left out.
    Errors are :class:`~model_boss.client.ClientError` subclasses. Streaming methods are
    async generators: they raise when iterated, and ``contextlib.aclosing`` closes one
    that is left early.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        client_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = Settings(base_url, api_key, timeout, connect_timeout, client_id)
        self._calls = Calls(client_id)
        self._http = httpx.AsyncClient(
            base_url=self._settings.base_url,
            headers=self._settings.headers(),
            timeout=self._settings.timeout,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def client_id(self) -> str | None:
        return self._settings.client_id

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> InferenceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- transport --------------------------------------------------------------------------

    async def _send(self, call: Call) -> dict[str, Any]:
        try:
            response = await self._http.request(
                call.method,
                call.path,
                json=call.body,
                timeout=self._settings.timeout_for(call.read_timeout_s),
            )
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self.base_url) from exc
        return json_answer(response)

    async def _stream(self, call: Call) -> AsyncGenerator[dict[str, Any], None]:
        request = self._http.build_request(call.method, call.path, json=call.body)
        request.headers["Accept"] = "text/event-stream"
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self.base_url) from exc
        try:
            if response.is_error:
                await response.aread()
                raise error_from_answer(
                    response.status_code, response.headers, response.content, url=str(request.url)
                )
            decoder = EventDecoder()
            async for line in response.aiter_lines():
                event = decoder.feed(line)
                if event is None:
                    continue
                if event.data == DONE:
                    return
                yield event_data(event)
            last = decoder.flush()
            if last is not None and last.data != DONE:
                yield event_data(last)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self.base_url) from exc
        finally:
            await response.aclose()

    # -- inference --------------------------------------------------------------------------

    async def chat(
        self, model: str, messages: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> dict[str, Any]:
        """``POST /v1/chat/completions``: the chat completion (with model-boss's ``metrics``)."""
        return await self._send(self._calls.chat(model, messages, kwargs))

    def chat_stream(
        self, model: str, messages: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The chat completion's chunks as they come, until ``[DONE]``.

        ``stream_options={"include_usage": True}`` adds a last chunk with the usage."""
        return self._stream(self._calls.chat(model, messages, kwargs, stream=True))

    async def completions(self, model: str, prompt: str, **kwargs: Any) -> dict[str, Any]:
        """``POST /v1/completions``: a text completion."""
        return await self._send(self._calls.completions(model, prompt, kwargs))

    def completions_stream(
        self, model: str, prompt: str, **kwargs: Any
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The text completion's chunks as they come, until ``[DONE]``."""
        return self._stream(self._calls.completions(model, prompt, kwargs, stream=True))

    async def embeddings(self, model: str, input: EmbeddingInput, **kwargs: Any) -> dict[str, Any]:
        """``POST /v1/embeddings``: one embedding per input in ``data``."""
        return await self._send(self._calls.embeddings(model, listed(input), kwargs))

    async def images(
        self, model: str, prompt: str, size: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """``POST /v1/images/generations``: ``size`` like ``"1024x1024"`` (or ``width=`` and
        ``height=``); the images are in ``data``."""
        return await self._send(self._calls.images(model, prompt, size, kwargs))

    async def responses(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]] | None = None,
        *,
        instructions: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """``POST /v1/responses``: a Response object (``output_text`` holds the text)."""
        return await self._send(self._calls.responses(model, listed(input), instructions, kwargs))

    def responses_stream(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]] | None = None,
        *,
        instructions: str | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The Responses events, each with its ``type``: ``response.created`` ...
        ``response.output_text.delta`` ... ``response.metrics``, ``response.completed``."""
        call = self._calls.responses(model, listed(input), instructions, kwargs, stream=True)
        return self._stream(call)

    # -- status -----------------------------------------------------------------------------

    async def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: the enabled models (id, category, backend, state...)."""
        return list_field(await self._send(Calls.get("/v1/models")), "data")

    async def model(self, model: str) -> dict[str, Any]:
        """``GET /v1/models/{model}``: one model's card."""
        return await self._send(Calls.model(model))

    async def queue(self) -> dict[str, Any]:
        """``GET /v1/queue``: ``depth``, ``waiting`` (position, priority, client, age_s...)
        and ``running``."""
        return await self._send(Calls.get("/v1/queue"))

    async def pool_status(self) -> dict[str, Any]:
        """``GET /v1/pool/status``: memory ``pools`` and model ``slots``."""
        return await self._send(Calls.get("/v1/pool/status"))

    async def gpu_status(self) -> dict[str, Any]:
        """``GET /api/v1/gpu/status``: the memory pools as the lease ledger sees them."""
        return await self._send(Calls.get("/api/v1/gpu/status"))

    async def requestors(self) -> list[dict[str, Any]]:
        """``GET /v1/requestors``: one entry per client id with its statistics."""
        return list_field(await self._send(Calls.get("/v1/requestors")), "clients")

    async def health(self) -> dict[str, Any]:
        """``GET /health``: ``status``, model count, queue depth, running requests."""
        return await self._send(Calls.get("/health"))

    # -- admin ------------------------------------------------------------------------------

    async def admin_models(self) -> list[dict[str, Any]]:
        """``GET /v1/admin/models``: every configured model with state, replicas, queue,
        footprint and the live overrides it accepts."""
        return list_field(await self._send(Calls.get("/v1/admin/models")), "models")

    async def admin_memory(self) -> dict[str, Any]:
        """``GET /v1/admin/gpu-memory``: pool memory and each model's estimate."""
        return await self._send(Calls.get("/v1/admin/gpu-memory"))

    async def load(
        self,
        model: str,
        replicas: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        wait: bool = True,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Load ``model`` (optionally ``replicas`` of it, with live ``overrides`` such as
        ``{"context_size": 8192}``). With ``wait`` the answer comes once it is ready
        (the coordinator waits up to ``timeout_s``, 600 s by default)."""
        return await self._send(Calls.load(model, replicas, overrides, wait, timeout_s))

    async def unload(self, model: str) -> dict[str, Any]:
        """Unload ``model`` once its running requests finish."""
        return await self._send(Calls.unload(model))
