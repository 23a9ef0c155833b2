"""The ``simulated`` kind: a backend with deterministic timings and answers, no process.

For tests and benchmarks of the layers above (engine, scheduler, API): it loads in
``load_s``, answers after ``ttft_s`` and streams ``tokens_per_s``, reports the footprint
it is told, and can be made to fail at start or crash while ready. Its text is
``"w0 w1 w2 ..."``; its images are solid-grey PNGs of the requested size.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from model_boss.backends._budget import LeaseBudget
from model_boss.backends._errors import (
    BackendCrashed,
    BackendNotRunning,
    BackendStartError,
    UnsupportedOperation,
)
from model_boss.backends._options import EntryReader
from model_boss.backends._protocol import (
    BackendHealth,
    BackendState,
    Capability,
    FailureCallback,
    Footprint,
    JSONBody,
)

__all__ = ["SimulatedBackend", "SimulatedOptions", "solid_png"]

EMBEDDING_DIMENSIONS = 8


def solid_png(width: int, height: int, grey: int = 128) -> bytes:
    """A valid 8-bit greyscale PNG of one colour."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = (b"\x00" + bytes([grey]) * width) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class SimulatedOptions:
    """A ``simulated`` entry's table; ``vram_mb`` and ``ram_mb`` are what footprint reports."""

    load_s: float = 0.0
    ttft_s: float = 0.0
    tokens_per_s: float = 50.0
    output_tokens: int = 16
    vram_mb: int = 0
    ram_mb: int = 0
    fail_start: bool = False
    capabilities: frozenset[Capability] = frozenset(Capability)

    TABLE: ClassVar[str] = "simulated"

    @classmethod
    def from_manifest(cls, model_id: str, entry: Mapping[str, Any]) -> SimulatedOptions:
        r = EntryReader(model_id, entry, cls.TABLE)
        names = r.string_list("capabilities") or tuple(c.value for c in Capability)
        known = {c.value: c for c in Capability}
        for name in names:
            if name not in known:
                raise r.error("simulated.capabilities", f"unknown capability {name!r}")
        options = cls(
            load_s=r.number("load_s", 0.0, minimum=0.0) or 0.0,
            ttft_s=r.number("ttft_s", 0.0, minimum=0.0) or 0.0,
            tokens_per_s=r.number("tokens_per_s", 50.0, minimum=0.0, exclusive_minimum=True)
            or 50.0,
            output_tokens=r.integer("output_tokens", 16, minimum=0) or 0,
            vram_mb=r.integer("vram_mb", 0, minimum=0) or 0,
            ram_mb=r.integer("ram_mb", 0, minimum=0) or 0,
            fail_start=r.boolean("fail_start", False),
            capabilities=frozenset(known[name] for name in names),
        )
        r.finish()
        return options


class SimulatedBackend:
    """A deterministic stand-in for a loaded model; ``sleep`` can be a virtual clock's."""

    kind: ClassVar[str] = "simulated"

    def __init__(
        self,
        model_id: str,
        options: SimulatedOptions,
        *,
        on_failure: FailureCallback | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        budget: LeaseBudget | None = None,
    ) -> None:
        self._model_id = model_id
        self.budget = budget  # no local memory to bind: kept for status and tests
        self.options = options
        self._on_failure = on_failure
        self._sleep = sleep
        self._state = BackendState.STOPPED
        self.failure: BackendStartError | BackendCrashed | None = None
        self.requests_served = 0

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def state(self) -> BackendState:
        return self._state

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.options.capabilities

    async def start(self) -> None:
        self._state = BackendState.STARTING
        self.failure = None
        await self._sleep(self.options.load_s)
        if self.options.fail_start:
            self.failure = BackendStartError(f"simulated {self._model_id!r}: fail_start is set")
            self._state = BackendState.FAILED
            raise self.failure
        self._state = BackendState.READY

    async def stop(self) -> None:
        self._state = BackendState.STOPPED

    def crash(self, reason: str = "simulated crash") -> None:
        """Act as a process that died: FAILED, and ``on_failure`` is called at once."""
        error = BackendCrashed(f"simulated {self._model_id!r}: {reason}", None, [reason])
        self.failure = error
        self._state = BackendState.FAILED
        if self._on_failure is not None:
            self._on_failure(error)

    async def health(self) -> BackendHealth:
        ok = self._state is BackendState.READY
        return BackendHealth(self._state, ok, "" if self.failure is None else str(self.failure))

    async def footprint(self) -> Footprint:
        if self._state is not BackendState.READY:
            return Footprint()
        vram = {0: self.options.vram_mb} if self.options.vram_mb else {}
        return Footprint(ram_mb=self.options.ram_mb, vram_mb=vram)

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model_id": self._model_id,
            "state": self._state.value,
            "requests_served": self.requests_served,
            "failure": None if self.failure is None else str(self.failure),
            "capabilities": sorted(c.value for c in self.options.capabilities),
        }

    def _check(self, capability: Capability) -> None:
        if capability not in self.options.capabilities:
            raise UnsupportedOperation(f"simulated {self._model_id!r}: no {capability.value}")
        if self._state is not BackendState.READY:
            raise BackendNotRunning(f"simulated {self._model_id!r} is {self._state.value}")

    def _token_count(self, body: JSONBody) -> int:
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        return min(int(limit), self.options.output_tokens) if limit else self.options.output_tokens

    async def _generate(self, body: JSONBody) -> str:
        tokens = self._token_count(body)
        await self._sleep(self.options.ttft_s + tokens / self.options.tokens_per_s)
        self.requests_served += 1
        return " ".join(f"w{i}" for i in range(tokens))

    def _usage(self, tokens: int) -> dict[str, int]:
        return {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}

    async def chat(self, body: JSONBody) -> dict[str, Any]:
        self._check(Capability.CHAT)
        text = await self._generate(body)
        return {
            "id": f"chatcmpl-sim-{self.requests_served}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length",
                }
            ],
            "usage": self._usage(self._token_count(body)),
        }

    async def completions(self, body: JSONBody) -> dict[str, Any]:
        self._check(Capability.COMPLETIONS)
        text = await self._generate(body)
        return {
            "id": f"cmpl-sim-{self.requests_served}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self._model_id,
            "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
            "usage": self._usage(self._token_count(body)),
        }

    def chat_stream(self, body: JSONBody) -> AsyncIterator[bytes]:
        self._check(Capability.CHAT)
        return self._stream(body, chat=True)

    def completions_stream(self, body: JSONBody) -> AsyncIterator[bytes]:
        self._check(Capability.COMPLETIONS)
        return self._stream(body, chat=False)

    async def _stream(self, body: JSONBody, *, chat: bool) -> AsyncIterator[bytes]:
        tokens = self._token_count(body)
        base = {
            "id": "chatcmpl-sim" if chat else "cmpl-sim",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": self._model_id,
        }
        await self._sleep(self.options.ttft_s)
        for index in range(tokens):
            if index:
                await self._sleep(1 / self.options.tokens_per_s)
            piece = f"w{index}" if index == 0 else f" w{index}"
            choice = (
                {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
            )
            yield b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n"
        last: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        if chat:
            last["delta"] = {}
        else:
            last["text"] = ""
        yield b"data: " + json.dumps({**base, "choices": [last]}).encode() + b"\n\n"
        options = body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage"):
            usage: dict[str, Any] = {**base, "choices": [], "usage": self._usage(tokens)}
            yield b"data: " + json.dumps(usage).encode() + b"\n\n"
        self.requests_served += 1
        yield b"data: [DONE]\n\n"

    async def embeddings(self, body: JSONBody) -> dict[str, Any]:
        self._check(Capability.EMBEDDINGS)
        raw = body.get("input", "")
        inputs = [raw] if isinstance(raw, str) else list(raw)
        await self._sleep(self.options.ttft_s)
        self.requests_served += 1
        data = []
        for index, text in enumerate(inputs):
            seed = zlib.crc32(str(text).encode())
            vector = [((seed >> (i * 4)) & 0xF) / 15.0 for i in range(EMBEDDING_DIMENSIONS)]
            data.append({"object": "embedding", "index": index, "embedding": vector})
        return {"object": "list", "data": data, "model": self._model_id, "usage": self._usage(0)}

    async def images(self, body: JSONBody) -> dict[str, Any]:
        self._check(Capability.IMAGES)
        width, height = (int(v) for v in str(body.get("size") or "64x64").split("x"))
        await self._sleep(self.options.ttft_s)
        self.requests_served += 1
        png = base64.b64encode(solid_png(width, height)).decode()
        count = int(body.get("n") or 1)
        return {"created": int(time.time()), "data": [{"b64_json": png}] * count}
