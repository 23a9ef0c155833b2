"""Fixtures of the backend tests: the real llama-server and demo model, fakes, helpers.

The real llama-server and SmolLM2 come from ``make setup`` (scripts/build-llama-server.sh
and ``python -m model_boss.backends.demo_model``). A test that needs them fails loudly
when they are missing; it is never skipped.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

FAKES = Path(__file__).parent / "fakes"


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_gone(pid: int, timeout_s: float) -> float:
    """Poll until ``pid`` is gone; returns how long it took, fails the test after ``timeout_s``."""
    start = time.monotonic()
    while not process_gone(pid):
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"process {pid} still runs {timeout_s} s later")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def environment_names(pid: int) -> set[str]:
    """The names of the variables in the environment process ``pid`` started with."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return {item.partition(b"=")[0].decode() for item in environ if item}


async def port_closed(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


@pytest.fixture
def smollm_entry(demo_model: Path, llama_server_binary: Path) -> dict[str, Any]:
    """A manifest entry for the real llama-server with the demo model, sized for 2 cores."""
    return {
        "path": str(demo_model),
        "context_size": 2048,
        "llama_server": {
            "binary": str(llama_server_binary),
            "parallel": 1,
            "threads": 2,
            "start_timeout_s": 60,
            "stop_grace_s": 5,
        },
    }
