"""End to end: `model-boss serve` with keys from files, and its real llama-server child
keyed, out of sight and without the coordinator's secrets (issue 16, findings 3 and 4)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from model_boss.backends import models_dir
from model_boss.backends._demo_model import DEMO_MODEL_FILE
from tests.backends.conftest import environment_names
from tests.e2e.conftest import start_coordinator

pytestmark = pytest.mark.slow

USER_KEY = "user-key-3b1f9c"
ADMIN_KEY = "admin-key-77d0e2"
CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def _args_of(pid: int) -> str:
    return subprocess.run(
        ["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout


def test_keys_from_files_and_a_keyed_child_without_the_coordinators_secrets(
    tmp_path: Path,
) -> None:
    assert (models_dir() / DEMO_MODEL_FILE).is_file(), "run `make setup` to fetch the demo model"
    user_file, admin_file = tmp_path / "api-keys", tmp_path / "admin-keys"
    user_file.write_text(f"# users\n{USER_KEY}\n\n")
    admin_file.write_text(f"{ADMIN_KEY}\n")
    for file in (user_file, admin_file):
        file.chmod(0o600)
    env = {
        "MODEL_BOSS_ADMIN_KEYS_FILE": str(admin_file),
        "OPENAI_API_KEY": "sk-remote-provider-secret",
        "HF_HOME": str(tmp_path / "hf"),
    }
    proc, url = start_coordinator(
        tmp_path / "state", "--api-key-file", str(user_file), "--log-level", "warning", env=env
    )
    user = {"Authorization": f"Bearer {USER_KEY}"}
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        assert USER_KEY not in _args_of(proc.pid)
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 401
            assert http.post("/v1/chat/completions", json=CHAT, headers=user).status_code == 200
            assert http.get("/v1/admin/models", headers=user).status_code == 403

            (seen,) = http.get("/v1/pool/status", headers=user).json()["slots"]
            assert "port" not in seen["backend"]
            (slot,) = http.get("/v1/pool/status", headers=admin).json()["slots"]
            port, pid = slot["backend"]["port"], slot["backend"]["pid"]
        assert port
        assert "--api-key" not in _args_of(pid)
        names = environment_names(pid)
        assert "LLAMA_API_KEY" in names
        assert "HF_HOME" in names
        for secret in ("MODEL_BOSS_ADMIN_KEYS_FILE", "OPENAI_API_KEY", "MODEL_BOSS_STATE_DIR"):
            assert secret not in names
        page = {"Origin": "http://evil.example"}
        child = f"http://127.0.0.1:{port}"
        for key in (None, USER_KEY, ADMIN_KEY):  # not even the coordinator's keys open it
            headers = page if key is None else {**page, "Authorization": f"Bearer {key}"}
            answer = httpx.post(f"{child}/v1/chat/completions", json=CHAT, headers=headers)
            assert answer.status_code == 401
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out, out
