"""What the subprocess kinds (llama_server, vllm_serve, diffusers) share.

A :class:`ProcessBackend` is one supervised process that serves HTTP on a free port of
127.0.0.1, plus one pooled client to it. Each start gives the process a new random API
key, in its environment (never on its command line), and the client sends it as
``Authorization: Bearer``: another local process that finds the port cannot use it.
Subclasses say how to build the command line, how to tell it is ready, and which OpenAI
endpoints it has.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from model_boss.backends._budget import LeaseBudget
from model_boss.backends._errors import (
    BackendCrashed,
    BackendNotRunning,
    BackendStartError,
    UnsupportedOperation,
)
from model_boss.backends._footprint import measure_process_tree
from model_boss.backends._http import UpstreamClient
from model_boss.backends._options import EntryReader
from model_boss.backends._paths import cache_root
from model_boss.backends._protocol import (
    BackendHealth,
    BackendState,
    Capability,
    FailureCallback,
    Footprint,
    JSONBody,
)
from model_boss.backends._supervisor import ProcessSpec, SupervisedProcess, free_port

__all__ = ["ProcessBackend", "ProcessOptions", "default_log_dir"]

log = logging.getLogger("model_boss.backends")


def default_log_dir() -> Path:
    return cache_root() / "logs"


@dataclass(frozen=True)
class ProcessOptions:
    """Fields every subprocess kind reads from its table."""

    binary: str | None = None
    library_path: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    start_timeout_s: float = 300.0
    stop_grace_s: float = 10.0
    request_timeout_s: float = 600.0
    thinking: bool | None = None
    """The manifest's ``thinking``: ``chat_template_kwargs.enable_thinking`` on each chat
    request that does not set it (None: the chat template's own default)."""

    @classmethod
    def read(cls, reader: EntryReader, *, start_timeout_s: float) -> ProcessOptions:
        return cls(
            binary=reader.string("binary"),
            library_path=reader.string_list("library_path"),
            env=reader.string_map("env"),
            extra_args=reader.string_list("extra_args"),
            start_timeout_s=_positive(reader, "start_timeout_s", start_timeout_s),
            stop_grace_s=_positive(reader, "stop_grace_s", 10.0),
            request_timeout_s=_positive(reader, "request_timeout_s", 600.0),
            thinking=_thinking(reader),
        )


def _thinking(reader: EntryReader) -> bool | None:
    path, value = reader.raw("thinking", top=True)
    if value is not None and not isinstance(value, bool):
        raise reader.error(path, "expected true or false", value)
    return value


def _positive(reader: EntryReader, key: str, default: float) -> float:
    value = reader.number(key, default, minimum=0.0, exclusive_minimum=True)
    assert value is not None
    return value


class ProcessBackend:
    """Base of the subprocess backends; see the ``Backend`` protocol for the contract."""

    kind: ClassVar[str]
    health_path: ClassVar[str] = "/health"
    death_signal: ClassVar[signal.Signals] = signal.SIGKILL
    """Sent to the process if the coordinator dies (PR_SET_PDEATHSIG)."""
    api_key_env: ClassVar[str | None] = None
    """The variable the process reads its API key from (None: it takes no key)."""
    _capabilities: frozenset[Capability] = frozenset()

    def __init__(
        self,
        model_id: str,
        process: ProcessOptions,
        *,
        gpus: Sequence[int] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        on_failure: FailureCallback | None = None,
        budget: LeaseBudget | None = None,
    ) -> None:
        self._model_id = model_id
        self._process_options = process
        self.budget = budget
        self._gpus = None if gpus is None else tuple(gpus)
        self._log_dir = default_log_dir() if log_dir is None else Path(log_dir)
        self._on_failure = on_failure
        self._state = BackendState.STOPPED
        self._process: SupervisedProcess | None = None
        self._client: UpstreamClient | None = None
        self._port: int | None = None
        self._api_key: str | None = None
        self.failure: BackendCrashed | BackendStartError | None = None
        self.startup_s: float | None = None

    # -- what subclasses provide -------------------------------------------------------

    async def prepare(self) -> None:
        """Work before the command line is built (probes, reading the model's metadata);
        raise BackendStartError to fail the start without a process."""

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def upstream_model(self) -> str:
        """The ``model`` value the upstream expects in request bodies."""
        return self._model_id

    async def is_ready(self, client: UpstreamClient) -> bool:
        status, _ = await client.get_status(self.health_path)
        return status == 200

    async def _probe(self, client: UpstreamClient) -> bool:
        try:
            return await self.is_ready(client)
        except (aiohttp.ClientError, OSError, ValueError):
            return False

    def extra_env(self) -> dict[str, str]:
        return {}

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def state(self) -> BackendState:
        return self._state

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self._capabilities

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def api_key(self) -> str | None:
        """The key the running process asks for (``Authorization: Bearer``), if any."""
        return self._api_key

    @property
    def log_path(self) -> Path:
        return self._log_dir / f"{self._model_id}.{self.kind}.log"

    def recent_log_lines(self, count: int = 30) -> list[str]:
        return [] if self._process is None else self._process.recent_lines(count)

    async def start(self) -> None:
        """Start the process and return once it is ready (raises BackendStartError)."""
        if self._state in (BackendState.READY, BackendState.STARTING):
            raise RuntimeError(f"{self.kind} backend {self._model_id!r} is {self._state.value}")
        if self._client is not None:  # left over from a run that crashed
            await self._client.aclose()
        self.failure = None
        options = self._process_options
        port = free_port()
        try:
            await self.prepare()
            argv = (*self.command(port), *options.extra_args)
        except BackendStartError as exc:
            self.failure = exc
            self._state = BackendState.FAILED
            raise
        env = {**options.env, **self.extra_env()}
        headers: dict[str, str] = {}
        key = None
        if self.api_key_env is not None:
            key = secrets.token_urlsafe(32)
            env[self.api_key_env] = key
            headers["Authorization"] = f"Bearer {key}"
        spec = ProcessSpec(
            argv=argv,
            name=f"{self.kind}[{self._model_id}]",
            env=env,
            library_path=options.library_path,
            gpus=self._gpus,
            log_path=self.log_path,
            death_signal=self.death_signal,
        )
        client = UpstreamClient(
            f"http://127.0.0.1:{port}",
            headers=headers,
            secrets=() if key is None else (key,),
            timeout_s=options.request_timeout_s,
        )
        process = SupervisedProcess(spec, on_unexpected_exit=self._crashed)
        self._process, self._client, self._port = process, client, port
        self._api_key = key
        self._state = BackendState.STARTING
        started = time.monotonic()
        try:
            await process.spawn()
            await process.wait_ready(
                lambda: self._probe(client),
                timeout_s=options.start_timeout_s,
                stop_grace_s=options.stop_grace_s,
            )
        except BaseException as exc:
            await process.stop(grace_s=options.stop_grace_s)
            await client.aclose()
            if isinstance(exc, BackendStartError):
                self.failure = exc
                self._state = BackendState.FAILED
            else:
                self._state = BackendState.STOPPED
            raise
        self.startup_s = time.monotonic() - started
        self._state = BackendState.READY
        log.info("%s ready on port %d after %.2f s", spec.name, port, self.startup_s)

    def _crashed(self, error: BackendCrashed) -> None:
        if self._state is not BackendState.READY:
            return
        self._state = BackendState.FAILED
        self.failure = error
        if self._on_failure is not None:
            self._on_failure(error)

    async def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after the grace period) and free it."""
        process, client = self._process, self._client
        if process is None or client is None:
            self._state = BackendState.STOPPED
            return
        failed = self._state is BackendState.FAILED
        self._state = BackendState.STOPPING
        await process.stop(grace_s=self._process_options.stop_grace_s)
        await client.aclose()
        self._state = BackendState.FAILED if failed else BackendState.STOPPED

    async def health(self) -> BackendHealth:
        if self._state is not BackendState.READY or self._client is None:
            detail = str(self.failure) if self.failure is not None else ""
            return BackendHealth(self._state, False, detail)
        try:
            status, _ = await self._client.get_status(self.health_path)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return BackendHealth(self._state, False, f"health probe failed: {exc}")
        return BackendHealth(self._state, status == 200, f"{self.health_path} answered {status}")

    async def footprint(self) -> Footprint:
        pid = self.pid
        if pid is None or self._process is None or not self._process.running:
            return Footprint()
        return measure_process_tree(pid)

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model_id": self._model_id,
            "state": self._state.value,
            "pid": self.pid if self._state is BackendState.READY else None,
            "port": self._port if self._state is BackendState.READY else None,
            "gpus": None if self._gpus is None else list(self._gpus),
            "log_path": str(self.log_path),
            "failure": None if self.failure is None else str(self.failure).splitlines()[0],
            "capabilities": sorted(c.value for c in self._capabilities),
        }

    # -- requests -------------------------------------------------------------------------

    def _ready_client(self, capability: Capability) -> UpstreamClient:
        if capability not in self._capabilities:
            raise UnsupportedOperation(
                f"{self.kind} backend {self._model_id!r} does not support {capability.value}"
            )
        if self._state is not BackendState.READY or self._client is None:
            reason = f": {self.failure}" if self.failure is not None else ""
            raise BackendNotRunning(
                f"{self.kind} backend {self._model_id!r} is {self._state.value}{reason}"
            )
        return self._client

    def _body(self, body: JSONBody, stream: bool | None) -> dict[str, Any]:
        out = {**body, "model": self.upstream_model()}
        if stream is not None:
            out["stream"] = stream
        return out

    def _chat_body(self, body: JSONBody, stream: bool) -> dict[str, Any]:
        out = self._body(body, stream)
        thinking = self._process_options.thinking
        kwargs = out.get("chat_template_kwargs")
        if thinking is not None and (kwargs is None or isinstance(kwargs, dict)):
            # The request's own enable_thinking wins over the manifest's default.
            out["chat_template_kwargs"] = {"enable_thinking": thinking, **(kwargs or {})}
        return out

    async def chat(self, body: JSONBody) -> dict[str, Any]:
        client = self._ready_client(Capability.CHAT)
        return await client.post_json("/v1/chat/completions", self._chat_body(body, False))

    def chat_stream(self, body: JSONBody) -> AsyncIterator[bytes]:
        client = self._ready_client(Capability.CHAT)
        return client.stream("/v1/chat/completions", self._chat_body(body, True))

    async def completions(self, body: JSONBody) -> dict[str, Any]:
        client = self._ready_client(Capability.COMPLETIONS)
        return await client.post_json("/v1/completions", self._body(body, False))

    def completions_stream(self, body: JSONBody) -> AsyncIterator[bytes]:
        client = self._ready_client(Capability.COMPLETIONS)
        return client.stream("/v1/completions", self._body(body, True))

    async def embeddings(self, body: JSONBody) -> dict[str, Any]:
        client = self._ready_client(Capability.EMBEDDINGS)
        return await client.post_json("/v1/embeddings", self._body(body, None))

    async def images(self, body: JSONBody) -> dict[str, Any]:
        client = self._ready_client(Capability.IMAGES)
        return await client.post_json("/v1/images/generations", self._body(body, None))
