"""The ``openai_remote`` kind: an OpenAI-compatible API elsewhere (no process, no memory).

The API key is read at ``start()`` from the environment variable the manifest names
(``openai_remote.api_key_env``); it is never stored in the options, and it is removed from every
error message, status payload and log line.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from model_boss.backends._budget import LeaseBudget
from model_boss.backends._errors import (
    BackendNotRunning,
    BackendStartError,
    UnsupportedOperation,
    UpstreamError,
)
from model_boss.backends._http import UpstreamClient
from model_boss.backends._options import EntryReader
from model_boss.backends._protocol import (
    BackendHealth,
    BackendState,
    Capability,
    FailureCallback,
    Footprint,
    JSONBody,
)

__all__ = ["OpenAIRemoteBackend", "OpenAIRemoteOptions"]


@dataclass(frozen=True)
class OpenAIRemoteOptions:
    """A ``openai_remote`` entry's ``remote`` table.

    ``health_check``: ``config_only`` (ready once configured; no call is made) or
    ``models`` (``GET {base_url}/models`` must answer 200 at start and on health checks).
    """

    base_url: str
    model: str
    api_key_env: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 0
    retry_backoff_s: float = 0.5
    health_check: str = "config_only"

    TABLE: ClassVar[str] = "openai_remote"

    @classmethod
    def from_manifest(cls, model_id: str, entry: Mapping[str, Any]) -> OpenAIRemoteOptions:
        r = EntryReader(model_id, entry, cls.TABLE)
        base_url = r.required_string("base_url")
        if not base_url.startswith(("http://", "https://")):
            raise r.error("openai_remote.base_url", "must start with http:// or https://", base_url)
        kind = r.choice("api_kind", ("chat_completions",), "chat_completions")
        assert kind is not None
        timeout_s = r.number("timeout_s", 120.0, minimum=0.0, exclusive_minimum=True)
        max_retries = r.integer("max_retries", 0, minimum=0, maximum=10)
        backoff = r.number("retry_backoff_s", 0.5, minimum=0.0)
        health = r.choice("health_check", ("config_only", "models"), "config_only")
        options = cls(
            base_url=base_url.rstrip("/"),
            model=r.string("model") or model_id,
            api_key_env=r.string("api_key_env"),
            timeout_s=timeout_s if timeout_s is not None else 120.0,
            max_retries=max_retries if max_retries is not None else 0,
            retry_backoff_s=backoff if backoff is not None else 0.5,
            health_check=health or "config_only",
        )
        r.finish()
        return options


class OpenAIRemoteBackend:
    """Requests go to a remote OpenAI-compatible API with ``Authorization: Bearer <key>``."""

    kind: ClassVar[str] = "openai_remote"
    _CAPABILITIES = frozenset({Capability.CHAT, Capability.COMPLETIONS, Capability.EMBEDDINGS})

    def __init__(
        self,
        model_id: str,
        options: OpenAIRemoteOptions,
        *,
        on_failure: FailureCallback | None = None,
        budget: LeaseBudget | None = None,
    ) -> None:
        self._model_id = model_id
        self.budget = budget  # no local memory to bind: kept for status and tests
        self.options = options
        self._on_failure = on_failure  # a remote API has no process that could die
        self._state = BackendState.STOPPED
        self._client: UpstreamClient | None = None
        self.failure: BackendStartError | None = None

    def __repr__(self) -> str:
        return f"OpenAIRemoteBackend({self._model_id!r}, {self.options!r})"

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def state(self) -> BackendState:
        return self._state

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self._CAPABILITIES

    def _read_key(self) -> str | None:
        name = self.options.api_key_env
        if name is None:
            return None
        key = os.environ.get(name)
        if not key:
            raise BackendStartError(
                f"openai_remote {self._model_id!r}: environment variable {name} is not set"
            )
        return key

    async def start(self) -> None:
        self._state = BackendState.STARTING
        self.failure = None
        try:
            key = self._read_key()
            headers = {} if key is None else {"Authorization": f"Bearer {key}"}
            client = UpstreamClient(
                self.options.base_url,
                headers=headers,
                timeout_s=self.options.timeout_s,
                retries=self.options.max_retries,
                retry_backoff_s=self.options.retry_backoff_s,
                secrets=() if key is None else (key,),
                trust_env=True,
                pool_streams=True,
            )
            if self.options.health_check == "models":
                try:
                    await client.get_json("/models")
                except UpstreamError as exc:
                    await client.aclose()
                    raise BackendStartError(
                        f"openai_remote {self._model_id!r}: health check failed: {exc}"
                    ) from None
        except BackendStartError as exc:
            self.failure = exc
            self._state = BackendState.FAILED
            raise
        self._client = client
        self._state = BackendState.READY

    async def stop(self) -> None:
        self._state = BackendState.STOPPING
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._state = BackendState.STOPPED

    async def health(self) -> BackendHealth:
        if self._state is not BackendState.READY or self._client is None:
            detail = "" if self.failure is None else str(self.failure)
            return BackendHealth(self._state, False, detail)
        if self.options.health_check == "config_only":
            return BackendHealth(self._state, True, "configured (config_only)")
        try:
            await self._client.get_json("/models")
        except UpstreamError as exc:
            return BackendHealth(self._state, False, str(exc))
        return BackendHealth(self._state, True, "/models answered 200")

    async def footprint(self) -> Footprint:
        return Footprint()

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model_id": self._model_id,
            "state": self._state.value,
            "base_url": self.options.base_url,
            "upstream_model": self.options.model,
            "api_key_env": self.options.api_key_env,
            "api_key_set": bool(
                self.options.api_key_env and os.environ.get(self.options.api_key_env)
            ),
            "failure": None if self.failure is None else str(self.failure),
            "capabilities": sorted(c.value for c in self._CAPABILITIES),
        }

    def _ready_client(self) -> UpstreamClient:
        if self._state is not BackendState.READY or self._client is None:
            raise BackendNotRunning(f"openai_remote {self._model_id!r} is {self._state.value}")
        return self._client

    def _body(self, body: JSONBody, stream: bool | None) -> dict[str, Any]:
        out = {**body, "model": self.options.model}
        if stream is not None:
            out["stream"] = stream
        return out

    async def chat(self, body: JSONBody) -> dict[str, Any]:
        return await self._ready_client().post_json("/chat/completions", self._body(body, False))

    def chat_stream(self, body: JSONBody) -> AsyncIterator[bytes]:
        return self._ready_client().stream("/chat/completions", self._body(body, True))

    async def completions(self, body: JSONBody) -> dict[str, Any]:
        return await self._ready_client().post_json("/completions", self._body(body, False))

    def completions_stream(self, body: JSONBody) -> AsyncIterator[bytes]:
        return self._ready_client().stream("/completions", self._body(body, True))

    async def embeddings(self, body: JSONBody) -> dict[str, Any]:
        return await self._ready_client().post_json("/embeddings", self._body(body, None))

    async def images(self, body: JSONBody) -> dict[str, Any]:
        raise UnsupportedOperation(f"openai_remote {self._model_id!r} does not support images")
