"""kill -9 of a coordinator whose model holds its share of a full RAM pool: a coordinator
started again is healthy within 2 s and serves its first request within 3 s, because the
dead coordinator's lease is released by the first grant that finds too little memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from model_boss import RAMBoss
from model_boss.testing import free_port
from tests.e2e.conftest import SERVICE_ENV

pytestmark = pytest.mark.slow


def _serve(state: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    env["MODEL_BOSS_STATE_DIR"] = str(state)
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("model-boss")), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: kill -9 takes its backends too
    )


def _healthy(url: str, started: float, proc: subprocess.Popen[bytes]) -> float:
    while time.monotonic() - started < 30:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "model-boss serve exited"
        time.sleep(0.02)
    raise AssertionError("no healthy /health within 30 s")


def _chat(url: str) -> int:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).status_code


async def test_a_coordinator_restarted_after_kill_9_on_a_full_pool_serves_at_once(
    tmp_path: Path, demo_model: Path, llama_server_binary: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = _serve(tmp_path, port)
    started = time.monotonic()
    procs = [first]
    try:
        cold = _healthy(url, started, first)
        assert _chat(url) == 200  # the model is loaded: the coordinator holds its lease
        async with RAMBoss(f"sqlite:///{tmp_path / 'ledger.db'}", holder="filler") as boss:
            pool = (await boss.status()).pools[0]
            filler = await boss.acquire(ram_mb=pool.free_mb, timeout=5)  # the pool is full
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            started = time.monotonic()
            second = _serve(tmp_path, port)
            procs.append(second)
            healthy = _healthy(url, started, second)
            assert _chat(url) == 200
            served = time.monotonic() - started
            await filler.release()
        print(
            f"[fault] coordinator kill -9 on a full pool: first start healthy after {cold:.2f} s; "
            f"restart healthy after {healthy:.2f} s, first request served {served:.2f} s "
            "after launch"
        )
        assert healthy < 2.0
        assert served < 3.0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
