"""One model's view of the coordinator: :class:`ModelBoss` and :class:`SyncModelBoss`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any

from model_boss.client._async import InferenceClient
from model_boss.client._calls import EmbeddingInput
from model_boss.client._settings import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_TIMEOUT_S
from model_boss.client._sync import SyncInferenceClient

__all__ = ["ModelBoss", "SyncModelBoss"]

Messages = Sequence[Mapping[str, Any]]


class ModelBoss:
    """An :class:`InferenceClient` bound to one model::

        async with ModelBoss(model_id="ministral-3b-instruct") as boss:
            reply = await boss.chat(
                messages=[{"role": "user", "content": "Hello!"}],
                x_client_id="my-service",
                x_priority="batch",
            )

    Keyword arguments (OpenAI fields and ``x_*`` queue fields) go into the request body,
    as with :class:`InferenceClient`. Pass ``client=`` to share one client between several
    models; the boss then leaves closing it to you.
    """

    def __init__(
        self,
        model_id: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        client_id: str | None = None,
        client: InferenceClient | None = None,
    ) -> None:
        self.model_id = model_id
        self._owns_client = client is None
        self.client = client or InferenceClient(
            base_url,
            api_key=api_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            client_id=client_id,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> ModelBoss:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def chat(self, messages: Messages, **kwargs: Any) -> dict[str, Any]:
        """A chat completion (``choices[0]["message"]["content"]`` holds the text)."""
        return await self.client.chat(self.model_id, messages, **kwargs)

    def chat_stream(self, messages: Messages, **kwargs: Any) -> AsyncGenerator[dict[str, Any]]:
        """The chat completion's chunks as they come."""
        return self.client.chat_stream(self.model_id, messages, **kwargs)

    async def complete(self, prompt: str, **kwargs: Any) -> dict[str, Any]:
        """A text completion (``choices[0]["text"]``)."""
        return await self.client.completions(self.model_id, prompt, **kwargs)

    def complete_stream(self, prompt: str, **kwargs: Any) -> AsyncGenerator[dict[str, Any]]:
        """The text completion's chunks as they come."""
        return self.client.completions_stream(self.model_id, prompt, **kwargs)

    async def embed(self, input: EmbeddingInput, **kwargs: Any) -> dict[str, Any]:
        """Embeddings (``data[i]["embedding"]``)."""
        return await self.client.embeddings(self.model_id, input, **kwargs)

    async def generate_image(
        self, prompt: str, size: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Images (``data[i]["b64_json"]``)."""
        return await self.client.images(self.model_id, prompt, size, **kwargs)

    async def respond(
        self, input: str | Messages | None = None, *, instructions: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """A Response object (``output_text`` holds the text)."""
        return await self.client.responses(
            self.model_id, input, instructions=instructions, **kwargs
        )

    def respond_stream(
        self, input: str | Messages | None = None, *, instructions: str | None = None, **kwargs: Any
    ) -> AsyncGenerator[dict[str, Any]]:
        """The Responses events as they come, each with its ``type``."""
        return self.client.responses_stream(
            self.model_id, input, instructions=instructions, **kwargs
        )

    async def info(self) -> dict[str, Any]:
        """The model's card: category, backend, state, modalities."""
        return await self.client.model(self.model_id)


class SyncModelBoss:
    """Blocking twin of :class:`ModelBoss` (``with SyncModelBoss(model_id="m") as boss:``)."""

    def __init__(
        self,
        model_id: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        client_id: str | None = None,
        client: SyncInferenceClient | None = None,
    ) -> None:
        self.model_id = model_id
        self._owns_client = client is None
        self.client = client or SyncInferenceClient(
            base_url,
            api_key=api_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            client_id=client_id,
        )

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> SyncModelBoss:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def chat(self, messages: Messages, **kwargs: Any) -> dict[str, Any]:
        """A chat completion (``choices[0]["message"]["content"]`` holds the text)."""
        return self.client.chat(self.model_id, messages, **kwargs)

    def chat_stream(self, messages: Messages, **kwargs: Any) -> Generator[dict[str, Any]]:
        """The chat completion's chunks as they come."""
        return self.client.chat_stream(self.model_id, messages, **kwargs)

    def complete(self, prompt: str, **kwargs: Any) -> dict[str, Any]:
        """A text completion (``choices[0]["text"]``)."""
        return self.client.completions(self.model_id, prompt, **kwargs)

    def complete_stream(self, prompt: str, **kwargs: Any) -> Generator[dict[str, Any]]:
        """The text completion's chunks as they come."""
        return self.client.completions_stream(self.model_id, prompt, **kwargs)

    def embed(self, input: EmbeddingInput, **kwargs: Any) -> dict[str, Any]:
        """Embeddings (``data[i]["embedding"]``)."""
        return self.client.embeddings(self.model_id, input, **kwargs)

    def generate_image(self, prompt: str, size: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Images (``data[i]["b64_json"]``)."""
        return self.client.images(self.model_id, prompt, size, **kwargs)

    def respond(
        self, input: str | Messages | None = None, *, instructions: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """A Response object (``output_text`` holds the text)."""
        return self.client.responses(self.model_id, input, instructions=instructions, **kwargs)

    def respond_stream(
        self, input: str | Messages | None = None, *, instructions: str | None = None, **kwargs: Any
    ) -> Generator[dict[str, Any]]:
        """The Responses events as they come, each with its ``type``."""
        return self.client.responses_stream(
            self.model_id, input, instructions=instructions, **kwargs
        )

    def info(self) -> dict[str, Any]:
        """The model's card: category, backend, state, modalities."""
        return self.client.model(self.model_id)
