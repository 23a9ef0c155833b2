"""The ``Backend`` protocol every kind of loaded model implements, and its small value types."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from model_boss.backends._errors import BackendCrashed

__all__ = [
    "Backend",
    "BackendHealth",
    "BackendState",
    "Capability",
    "FailureCallback",
    "Footprint",
    "JSONBody",
]

JSONBody = Mapping[str, Any]
"""An already-validated OpenAI request body; backends pass it on without re-validating."""

FailureCallback = Callable[[BackendCrashed], None]
"""Called once, from the event loop, the moment a ready backend's process dies."""


class BackendState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


class Capability(enum.Enum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    IMAGES = "images"


@dataclass(frozen=True)
class Footprint:
    """Memory a loaded backend really uses: host RAM and, per physical GPU index, VRAM."""

    ram_mb: int = 0
    vram_mb: Mapping[int, int] = field(default_factory=dict)

    @property
    def total_vram_mb(self) -> int:
        return sum(self.vram_mb.values())


@dataclass(frozen=True)
class BackendHealth:
    state: BackendState
    ok: bool
    detail: str = ""


@runtime_checkable
class Backend(Protocol):
    """One loaded (or loadable) model.

    ``start`` returns only once the backend answers requests; ``stop`` returns only once
    its process (if any) is gone. Request methods take OpenAI request bodies as dicts.
    Non-streaming calls return the upstream's JSON as a dict. Streaming calls return an
    async iterator of complete SSE events (raw bytes, ``data: ...\\n\\n``) as the upstream
    produces them; closing the iterator early (``aclose()``, or cancelling the task that
    reads it) closes the upstream connection, so generation stops.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def state(self) -> BackendState: ...

    @property
    def capabilities(self) -> frozenset[Capability]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def health(self) -> BackendHealth: ...

    async def footprint(self) -> Footprint: ...

    def status(self) -> dict[str, Any]:
        """A JSON-safe description for status endpoints (never holds secrets)."""
        ...

    async def chat(self, body: JSONBody) -> dict[str, Any]: ...

    def chat_stream(self, body: JSONBody) -> AsyncIterator[bytes]: ...

    async def completions(self, body: JSONBody) -> dict[str, Any]: ...

    def completions_stream(self, body: JSONBody) -> AsyncIterator[bytes]: ...

    async def embeddings(self, body: JSONBody) -> dict[str, Any]: ...

    async def images(self, body: JSONBody) -> dict[str, Any]: ...
