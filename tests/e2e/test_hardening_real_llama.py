"""Issue 16 against a real llama-server under `model-boss serve`: fields that size the answer
are checked before they reach it, its buffered answers are capped while the coordinator's
memory stays bounded, and live overrides are range-checked and not kept when a start fails
with them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.e2e.conftest import start_coordinator

pytestmark = pytest.mark.slow

CAP_MB = 0.02  # 20 KiB: a short answer fits, 48 tokens with 20 probabilities each do not
CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}]}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, demo_model: Path, llama_server_binary: Path
) -> Iterator[tuple[str, int]]:
    state = tmp_path_factory.mktemp("state")
    settings = state / "settings.json"
    entry = {
        "path": str(demo_model),
        "category": "llm",
        "context_size": 2048,
        "llama_server": {"binary": str(llama_server_binary), "parallel": 1, "threads": 2},
    }
    service = {"max_answer_mb": CAP_MB, "max_queue": 50}
    settings.write_text(json.dumps({"service": service, "models": {"smollm2": entry}}))
    proc, url = start_coordinator(state, "--settings", str(settings), "--log-level", "warning")
    try:
        yield url, proc.pid
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out, out


def chat(url: str, **fields: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={**CHAT, **fields}, timeout=120)


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_fields_that_size_the_answer_are_400s_and_memory_stays_bounded(
    served: tuple[str, int],
) -> None:
    url, pid = served
    assert chat(url, max_tokens=4).status_code == 200  # loaded and warm
    rss = psutil.Process(pid).memory_info().rss
    # The request: a 225 MB answer took the coordinator from 241 MB to 2.1 GB.
    cases: list[tuple[dict[str, Any], str]] = [
        ({"n_probs": 1e9, "max_tokens": 48}, "n_probs"),
        ({"n_probs": 10**9, "max_tokens": 48}, "n_probs"),
        ({"n_probs": 21}, "n_probs"),
        ({"top_logprobs": 10**6, "logprobs": True}, "top_logprobs"),
        ({"n_predict": 10**6}, "n_predict"),
        ({"max_tokens": 4096}, "max_tokens"),  # over the model's context (2048)
        ({"top_k": -5}, "top_k"),
    ]
    for fields, param in cases:
        error = error_of(chat(url, **fields), 400)
        assert error["param"] == param, error
        assert param in error["message"]
    # In range, but the answer (48 tokens x 20 probabilities) is over the cap: a clear 502.
    error = error_of(chat(url, n_probs=20, max_tokens=48), 502)
    assert error["code"] == "answer_too_large"
    assert "max_answer_mb" in error["message"]
    assert psutil.Process(pid).memory_info().rss - rss < 64 * 1024 * 1024
    # Fields llama-server does not know are dropped, not refused; known ones pass.
    r = chat(url, max_tokens=4, n_probs=2, top_k=40, no_such_field={"x": 1})
    assert r.status_code == 200, r.text


def test_overrides_are_range_checked_and_one_whose_start_failed_is_dropped(
    served: tuple[str, int],
) -> None:
    url, _ = served
    admin = f"{url}/v1/admin/models"
    listed = httpx.get(admin, timeout=30).json()["models"][0]
    ranges = listed["capabilities"]["override_ranges"]
    assert ranges["parallel"] == {"type": "integer", "minimum": 1, "maximum": 256}
    for key, value in [("context_size", 10**12), ("parallel", 10**9), ("spec_draft_n_max", 10**18)]:
        r = httpx.post(f"{admin}/smollm2/load", json={"overrides": {key: value}}, timeout=60)
        error = error_of(r, 400)
        assert error["param"] == f"overrides.{key}"
        assert error["code"] == "invalid_override"
    httpx.post(f"{admin}/smollm2/unload", timeout=30)
    deadline = time.monotonic() + 30
    while httpx.get(admin, timeout=30).json()["models"][0]["state"] != "unloaded":
        assert time.monotonic() < deadline, "smollm2 was not unloaded"
        time.sleep(0.05)
    # In range, but llama-server aborts with a context of one token: the load fails...
    r = httpx.post(f"{admin}/smollm2/load", json={"overrides": {"context_size": 1}}, timeout=120)
    assert error_of(r, 503)["code"] == "load_failed"
    # ... and the override is not kept: requests and a plain load work again.
    assert httpx.get(admin, timeout=30).json()["models"][0]["overrides"] == {}
    assert chat(url, max_tokens=4).status_code == 200
    r = httpx.post(f"{admin}/smollm2/load", json={}, timeout=120)
    assert r.status_code == 200, r.text
