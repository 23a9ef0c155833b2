"""What a llama-server binary can do: its options (``--help``) and devices (``--list-devices``).

Each binary is asked once per coordinator process; the answer is cached under the binary's
real path, modification time and size, so a rebuilt binary is asked again. The probes run
as asyncio subprocesses (they never block the event loop) with a timeout; a binary that
cannot answer (an old build, a stand-in script) reads as "unknown", never as a failure:
starting it reports what is wrong with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["LlamaBinary", "clear_probe_cache", "parse_devices", "probe_llama_server"]

_HELP_TIMEOUT_S = 10.0
_DEVICES_TIMEOUT_S = 30.0  # CUDA initialisation on a host with many GPUs takes a while
_NOT_GPU = ("CPU", "BLAS", "AMX", "ACCEL")  # host-side devices, never VRAM
_DEVICE_LINE = re.compile(r"^\s+([A-Za-z][\w-]*?)(\d*): (.*)$")


@dataclass(frozen=True)
class LlamaBinary:
    """The answers of one binary. ``gpu_devices`` is None when it could not tell."""

    path: str
    has_fit: bool = False
    ngl_all: bool = False
    gpu_devices: tuple[str, ...] | None = None
    has_cors_origins: bool = False


_Key = tuple[str, int, int]
_options: dict[_Key, tuple[bool, bool, bool]] = {}
_devices: dict[_Key, tuple[str, ...] | None] = {}


def clear_probe_cache() -> None:
    _options.clear()
    _devices.clear()


def parse_devices(text: str) -> tuple[str, ...] | None:
    """The GPU devices in ``--list-devices`` output (``CUDA0: NVIDIA H200 (...)``), or None
    when the output is not a device list."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Available devices:"), None)
    if start is None:
        return None
    gpus: list[str] = []
    for line in lines[start + 1 :]:
        match = _DEVICE_LINE.match(line)
        if match is None:
            continue
        if match.group(1).upper() not in _NOT_GPU:
            gpus.append(line.strip())
    return tuple(gpus)


def _has_option(help_text: str, option: str) -> bool:
    return re.search(rf"(^|[\s,]){re.escape(option)}([\s,=]|$)", help_text, re.M) is not None


async def _run(argv: list[str], env: Mapping[str, str], timeout_s: float) -> str | None:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        await process.wait()
        return None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        await process.wait()
        raise
    return out.decode("utf-8", "replace")


def _key(binary: str) -> _Key | None:
    try:
        real = os.path.realpath(binary)
        stat = os.stat(real)
    except OSError:
        return None
    return (real, stat.st_mtime_ns, stat.st_size)


async def probe_llama_server(
    binary: str, env: Mapping[str, str], *, devices: bool = True
) -> LlamaBinary:
    """Ask ``binary`` (run with ``env``) for its options and, with ``devices``, its devices."""
    key = _key(binary)
    if key is None:
        return LlamaBinary(binary)
    if key not in _options:
        help_text = await _run([binary, "--help"], env, _HELP_TIMEOUT_S) or ""
        _options[key] = (
            _has_option(help_text, "--fit"),
            _has_option(help_text, "--n-gpu-layers") and "'all'" in help_text,
            _has_option(help_text, "--cors-origins"),
        )
    if devices and key not in _devices:
        listed = await _run([binary, "--list-devices"], env, _DEVICES_TIMEOUT_S)
        _devices[key] = None if listed is None else parse_devices(listed)
    has_fit, ngl_all, cors = _options[key]
    return LlamaBinary(binary, has_fit, ngl_all, _devices.get(key), cors)
