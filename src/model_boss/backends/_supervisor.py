"""The process supervisor shared by the subprocess backends (see DESIGN.md beside this file).

One :class:`SupervisedProcess` runs one child: in its own process group and session,
with PR_SET_PDEATHSIG so it dies with the coordinator, with the slot's GPUs in
``CUDA_VISIBLE_DEVICES``, its output kept (recent lines in memory, everything in a log
file), readiness polled against a deadline, stopped by SIGTERM then SIGKILL to the whole
group, and an unexpected exit reported at once with the last log lines.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from model_boss.backends._errors import BackendCrashed, BackendStartError, BackendStartTimeout

__all__ = [
    "CHILD_ENV_NAMES",
    "CHILD_ENV_PREFIXES",
    "ProcessSpec",
    "SupervisedProcess",
    "describe_returncode",
    "free_port",
    "scrub_env",
]

log = logging.getLogger("model_boss.backends.supervisor")

_PR_SET_PDEATHSIG = 1
_READ_CHUNK = 65536
_MAX_LINE = 1024 * 1024
_PDEATHSIG_AVAILABLE = sys.platform.startswith("linux")
if _PDEATHSIG_AVAILABLE:  # resolved before any fork: the child only calls it
    _prctl = ctypes.CDLL(None, use_errno=True).prctl


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the child binds it; a race loses cleanly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def describe_returncode(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


CHILD_ENV_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM"}
    | {"TMPDIR", "TMP", "TEMP", "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV"}
)
"""Variables of the coordinator's environment a child gets (besides the prefixes below)."""

CHILD_ENV_PREFIXES = (
    *("LC_", "XDG_", "CUDA_", "NVIDIA_", "NCCL_", "HF_", "TRANSFORMERS_", "TORCH", "PYTORCH_"),
    *("VLLM_", "GGML_", "OMP_", "MKL_", "OPENBLAS_"),
)
"""Prefixes of the variables a child gets: locale, GPU runtime, model caches, engine
tuning. Nothing else passes: no ``MODEL_BOSS_*`` keys, no remote providers' keys."""


def scrub_env(base: Mapping[str, str]) -> dict[str, str]:
    """What of ``base`` a child may see (see :data:`CHILD_ENV_NAMES`, ``_PREFIXES``)."""
    return {
        name: value
        for name, value in base.items()
        if name in CHILD_ENV_NAMES or name.startswith(CHILD_ENV_PREFIXES)
    }


@dataclass(frozen=True)
class ProcessSpec:
    """What to run. ``gpus=None`` inherits CUDA_VISIBLE_DEVICES; ``()`` hides every GPU.

    The child's environment is the scrubbed coordinator environment (:func:`scrub_env`)
    plus ``env`` (the manifest's, then the backend's own, such as its API key)."""

    argv: tuple[str, ...]
    name: str
    env: Mapping[str, str] = field(default_factory=dict)
    library_path: tuple[str, ...] = ()
    gpus: tuple[int, ...] | None = None
    log_path: Path | None = None
    cwd: Path | None = None
    death_signal: signal.Signals = signal.SIGKILL
    keep_lines: int = 200

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = scrub_env(os.environ if base is None else base)
        if self.gpus is not None:
            # GPU indices come from NVML, which counts in PCI bus order; CUDA's own default
            # order (fastest first) may differ on hosts with mixed GPUs.
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env.update(self.env)
        if self.library_path:
            existing = env.get("LD_LIBRARY_PATH", "")
            env["LD_LIBRARY_PATH"] = ":".join([*self.library_path, *filter(None, [existing])])
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in self.gpus)
        return env


class SupervisedProcess:
    """One supervised child process. Use from a single event loop."""

    def __init__(
        self,
        spec: ProcessSpec,
        *,
        on_unexpected_exit: Callable[[BackendCrashed], None] | None = None,
    ) -> None:
        self.spec = spec
        self._on_unexpected_exit = on_unexpected_exit
        self._process: asyncio.subprocess.Process | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=spec.keep_lines)
        self._exited = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._ready = False
        self._stopping = False
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    @property
    def running(self) -> bool:
        return self._process is not None and not self._exited.is_set()

    def recent_lines(self, count: int = 30) -> list[str]:
        lines = list(self._lines)
        return lines[-count:] if count else lines

    async def spawn(self) -> None:
        """Start the child; returns as soon as it runs (not when it is ready)."""
        if self._process is not None:
            raise RuntimeError(f"{self.spec.name} was already spawned")
        spec = self.spec
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            # Opening a local file is quick; the reader task closes it when output ends.
            self._log_file = open(spec.log_path, "ab")  # noqa: SIM115, ASYNC230
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            self._log_file.write(f"=== {stamp} starting {spec.name} ===\n".encode())
        parent = os.getpid()
        death_signal = int(spec.death_signal)

        def in_child() -> None:  # between fork and exec: two system calls, nothing else
            _prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

        try:
            self._process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=spec.child_env(),
                cwd=spec.cwd,
                start_new_session=True,
                preexec_fn=in_child if _PDEATHSIG_AVAILABLE else None,
            )
        except OSError as exc:
            self._close_log()
            raise BackendStartError(f"cannot run {spec.name} ({spec.argv[0]}): {exc}") from None
        log.info("%s started, pid %d", spec.name, self._process.pid)
        self._reader = asyncio.create_task(self._read_output(), name=f"{spec.name} output")
        self._watcher = asyncio.create_task(self._watch_exit(), name=f"{spec.name} exit")

    async def _read_output(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        stdout = self._process.stdout
        partial = b""
        try:
            while chunk := await stdout.read(_READ_CHUNK):
                if self._log_file is not None:
                    self._log_file.write(chunk)
                    self._log_file.flush()
                *lines, partial = (partial + chunk).split(b"\n")
                if len(partial) > _MAX_LINE:  # output without newlines: keep memory bounded
                    lines.append(partial)
                    partial = b""
                self._lines.extend(line.decode("utf-8", "replace").rstrip() for line in lines)
            if partial:
                self._lines.append(partial.decode("utf-8", "replace").rstrip())
        finally:
            self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def _watch_exit(self) -> None:
        assert self._process is not None
        assert self._reader is not None
        returncode = await self._process.wait()
        # Let the reader catch the last lines, but never wait on a grandchild that
        # inherited the pipe: reporting the exit at once matters more.
        await asyncio.wait({self._reader}, timeout=0.2)
        self._exited.set()
        if self._stopping:
            return
        self._signal_group(signal.SIGKILL)  # whatever the dead leader left behind
        log.warning("%s exited unexpectedly: %s", self.spec.name, describe_returncode(returncode))
        if self._ready and self._on_unexpected_exit is not None:
            error = BackendCrashed(
                f"{self.spec.name} exited unexpectedly ({describe_returncode(returncode)})",
                returncode,
                self.recent_lines(),
            )
            self._on_unexpected_exit(error)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, sig)  # the child leads its own group

    async def wait_ready(
        self,
        probe: Callable[[], Awaitable[bool]],
        *,
        timeout_s: float,
        poll_interval_s: float = 0.1,
        probe_timeout_s: float = 5.0,
        stop_grace_s: float = 5.0,
    ) -> None:
        """Poll ``probe`` until it returns True.

        Raises :class:`BackendStartError` at once if the process exits first, and
        :class:`BackendStartTimeout` (after stopping the process) when ``timeout_s`` runs out.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        exit_waiter = asyncio.ensure_future(self._exited.wait())
        try:
            while True:
                if self._stopping:
                    raise BackendStartError(
                        f"{self.spec.name} was stopped during start-up", self.recent_lines()
                    )
                if self._exited.is_set():
                    raise BackendStartError(
                        f"{self.spec.name} exited during start-up"
                        f" ({describe_returncode(self.returncode)})",
                        self.recent_lines(),
                    )
                remaining = deadline - loop.time()
                if remaining <= 0:
                    await self.stop(grace_s=stop_grace_s)
                    raise BackendStartTimeout(
                        f"{self.spec.name} was not ready after {timeout_s:g} s; stopped it",
                        self.recent_lines(),
                    )
                try:
                    ready = await asyncio.wait_for(probe(), min(remaining, probe_timeout_s))
                except (OSError, TimeoutError):
                    ready = False
                if ready and not self._exited.is_set():
                    self._ready = True
                    return
                await asyncio.wait({exit_waiter}, timeout=min(poll_interval_s, remaining))
        finally:
            exit_waiter.cancel()

    async def wait_exit(self) -> int | None:
        await self._exited.wait()
        return self.returncode

    async def stop(self, *, grace_s: float = 10.0) -> int | None:
        """SIGTERM the group, SIGKILL it after ``grace_s``; returns once the child is reaped."""
        if self._process is None:
            return None
        self._stopping = True
        process = self._process
        if not self._exited.is_set():
            self._signal_group(signal.SIGTERM)
            # Wait on the process itself, not on the exit watcher: the watcher task may be
            # gone (an event loop shutting down cancels every task before a stop in a
            # ``finally`` runs), and then its event would never be set.
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                log.warning("%s ignored SIGTERM for %g s; killing it", self.spec.name, grace_s)
                self._signal_group(signal.SIGKILL)
                await process.wait()
            self._exited.set()
        self._signal_group(signal.SIGKILL)  # stragglers that outlived the leader
        if self._reader is not None:
            await asyncio.wait({self._reader}, timeout=1.0)
            if not self._reader.done():  # a grandchild still holds the pipe open
                self._reader.cancel()
        log.info("%s stopped (%s)", self.spec.name, describe_returncode(self.returncode))
        return self.returncode
