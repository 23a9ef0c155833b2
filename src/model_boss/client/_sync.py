"""The blocking client: :class:`SyncInferenceClient`, the twin of ``InferenceClient``."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
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

__all__ = ["SyncInferenceClient"]


class SyncInferenceClient:
    """Blocking twin of :class:`~model_boss.client.InferenceClient`: the same methods and
    settings, on ``httpx.Client`` (``with SyncInferenceClient() as c:``). Streaming methods
    are generators; ``close()`` one that is left early (or let it be collected).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        client_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = Settings(base_url, api_key, timeout, connect_timeout, client_id)
        self._calls = Calls(client_id)
        self._http = httpx.Client(
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

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SyncInferenceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------------

    def _send(self, call: Call) -> dict[str, Any]:
        try:
            response = self._http.request(
                call.method,
                call.path,
                json=call.body,
                timeout=self._settings.timeout_for(call.read_timeout_s),
            )
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self.base_url) from exc
        return json_answer(response)

    def _stream(self, call: Call) -> Generator[dict[str, Any], None, None]:
        request = self._http.build_request(call.method, call.path, json=call.body)
        request.headers["Accept"] = "text/event-stream"
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self.base_url) from exc
        try:
            if response.is_error:
                response.read()
                raise error_from_answer(
                    response.status_code, response.headers, response.content, url=str(request.url)
                )
            decoder = EventDecoder()
            for line in response.iter_lines():
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
            response.close()

    # -- inference --------------------------------------------------------------------------

    def chat(
        self, model: str, messages: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> dict[str, Any]:
        """``POST /v1/chat/completions``: the chat completion (with model-boss's ``metrics``)."""
        return self._send(self._calls.chat(model, messages, kwargs))

    def chat_stream(
        self, model: str, messages: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> Generator[dict[str, Any], None, None]:
        """The chat completion's chunks as they come, until ``[DONE]``.

        ``stream_options={"include_usage": True}`` adds a last chunk with the usage."""
        return self._stream(self._calls.chat(model, messages, kwargs, stream=True))

    def completions(self, model: str, prompt: str, **kwargs: Any) -> dict[str, Any]:
        """``POST /v1/completions``: a text completion."""
        return self._send(self._calls.completions(model, prompt, kwargs))

    def completions_stream(
        self, model: str, prompt: str, **kwargs: Any
    ) -> Generator[dict[str, Any], None, None]:
        """The text completion's chunks as they come, until ``[DONE]``."""
        return self._stream(self._calls.completions(model, prompt, kwargs, stream=True))

    def embeddings(self, model: str, input: EmbeddingInput, **kwargs: Any) -> dict[str, Any]:
        """``POST /v1/embeddings``: one embedding per input in ``data``."""
        return self._send(self._calls.embeddings(model, listed(input), kwargs))

    def images(
        self, model: str, prompt: str, size: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """``POST /v1/images/generations``: ``size`` like ``"1024x1024"`` (or ``width=`` and
        ``height=``); the images are in ``data``."""
        return self._send(self._calls.images(model, prompt, size, kwargs))

    def responses(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]] | None = None,
        *,
        instructions: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """``POST /v1/responses``: a Response object (``output_text`` holds the text)."""
        return self._send(self._calls.responses(model, listed(input), instructions, kwargs))

    def responses_stream(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]] | None = None,
        *,
        instructions: str | None = None,
        **kwargs: Any,
    ) -> Generator[dict[str, Any], None, None]:
        """The Responses events, each with its ``type``: ``response.created`` ...
        ``response.output_text.delta`` ... ``response.metrics``, ``response.completed``."""
        call = self._calls.responses(model, listed(input), instructions, kwargs, stream=True)
        return self._stream(call)

    # -- status -----------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: the enabled models (id, category, backend, state...)."""
        return list_field(self._send(Calls.get("/v1/models")), "data")

    def model(self, model: str) -> dict[str, Any]:
        """``GET /v1/models/{model}``: one model's card."""
        return self._send(Calls.model(model))

    def queue(self) -> dict[str, Any]:
        """``GET /v1/queue``: ``depth``, ``waiting`` (position, priority, client, age_s...)
        and ``running``."""
        return self._send(Calls.get("/v1/queue"))

    def pool_status(self) -> dict[str, Any]:
        """``GET /v1/pool/status``: memory ``pools`` and model ``slots``."""
        return self._send(Calls.get("/v1/pool/status"))

    def gpu_status(self) -> dict[str, Any]:
        """``GET /api/v1/gpu/status``: the memory pools as the lease ledger sees them."""
        return self._send(Calls.get("/api/v1/gpu/status"))

    def requestors(self) -> list[dict[str, Any]]:
        """``GET /v1/requestors``: one entry per client id with its statistics."""
        return list_field(self._send(Calls.get("/v1/requestors")), "clients")

    def health(self) -> dict[str, Any]:
        """``GET /health``: ``status``, model count, queue depth, running requests."""
        return self._send(Calls.get("/health"))

    # -- admin ------------------------------------------------------------------------------

    def admin_models(self) -> list[dict[str, Any]]:
        """``GET /v1/admin/models``: every configured model with state, replicas, queue,
        footprint and the live overrides it accepts."""
        return list_field(self._send(Calls.get("/v1/admin/models")), "models")

    def admin_memory(self) -> dict[str, Any]:
        """``GET /v1/admin/gpu-memory``: pool memory and each model's estimate."""
        return self._send(Calls.get("/v1/admin/gpu-memory"))

    def load(
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
        return self._send(Calls.load(model, replicas, overrides, wait, timeout_s))

    def unload(self, model: str) -> dict[str, Any]:
        """Unload ``model`` once its running requests finish."""
        return self._send(Calls.unload(model))
