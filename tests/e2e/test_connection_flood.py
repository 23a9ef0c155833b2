"""End to end: a flood of idle connections does not take `model-boss serve` down
(issue 16, finding 5). Bounded: 2,000 connections on loopback, under a minute."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model_boss.testing import free_port
from tests.e2e.conftest import SERVICE_ENV

pytestmark = pytest.mark.slow

FLOOD = 2000
FILES = 1024  # the coordinator's open-files limit: fewer than the flood


def _few_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


@contextlib.contextmanager
def coordinator(state: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    environ["MODEL_BOSS_STATE_DIR"] = str(state)
    exe = Path(sys.executable).with_name("model-boss")
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--log-level", "warning", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_few_files,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the coordinator did not start"
            time.sleep(0.05)
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _listen_backlog(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[2])  # State Recv-Q Send-Q ...: a listener's Send-Q is its backlog


def test_idle_connections_beyond_the_cap_are_refused_and_a_real_request_is_answered(
    tmp_path: Path,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FLOOD + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, FLOOD + 500), hard))
    args = ("--max-connections", "300", "--header-timeout", "1", "--backlog", "3000")
    with coordinator(tmp_path / "state", *args) as (proc, port):
        assert _listen_backlog(port) == min(
            3000, int(Path("/proc/sys/net/core/somaxconn").read_text())
        )
        flood: list[socket.socket] = []
        try:
            started = time.monotonic()
            for _ in range(FLOOD):  # connect and say nothing
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            assert time.monotonic() - started < 30
            asked = time.monotonic()
            answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=15)
            assert answer.status_code == 200
            assert time.monotonic() - asked < 10
            # the idle ones within the cap were closed by the header timeout: reads see EOF
            idle = flood[0]
            idle.settimeout(5)
            assert idle.recv(1024) == b""
        finally:
            for sock in flood:
                sock.close()
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "connection cap reached" in out, out
    assert "Traceback" not in out, out
