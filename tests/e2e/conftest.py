"""Running `model-boss serve` as users do: a subprocess on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from model_boss.testing import free_port

# What would make the coordinator under test something other than what the test asks for
# (the model cache and llama-server location, MODEL_BOSS_CACHE and friends, are kept).
SERVICE_ENV = {
    "MODEL_BOSS_SETTINGS",
    "MODEL_BOSS_LOCAL_SETTINGS",
    "MODEL_BOSS_LEDGER_URL",
    "MODEL_BOSS_REDIS_URL",
    "REDIS_URL",
    "MODEL_BOSS_DEVICES",
    "MODEL_BOSS_API_KEYS",
    "MODEL_BOSS_ADMIN_KEYS",
    "MODEL_BOSS_HOST",
}


def start_coordinator(
    state: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start `model-boss serve` with its state in ``state``; return it once /health is 200."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    environ.update(env or {}, MODEL_BOSS_STATE_DIR=str(state))
    exe = Path(sys.executable).with_name("model-boss")
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"model-boss serve did not start: {proc.communicate()[0]}")
        time.sleep(0.05)
