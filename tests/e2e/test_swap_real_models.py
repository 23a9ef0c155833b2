"""Two real llama-server models whose declared footprints fit only one at a time beside a
pinned one, served by `model-boss serve --settings`: the pool swaps, the pinned model stays,
and a HIGH request queued behind LOW ones runs first."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from model_boss.backends import models_dir
from model_boss.backends._demo_model import DEMO_MODEL_FILE
from tests.e2e.conftest import start_coordinator

pytestmark = pytest.mark.slow


def entry(vram_mb: int, **extra: Any) -> dict[str, Any]:
    return {
        "path": str(models_dir() / DEMO_MODEL_FILE),
        "vram_mb": vram_mb,
        "context_size": 1024,
        "llama_server": {"parallel": 1},
        **extra,
    }


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("state")
    manifest = state / "manifest.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "left": entry(600),
                    "right": entry(600),
                    "keeper": entry(500, pin=True),
                }
            }
        )
    )
    # One declared 1500 MiB GPU: the pinned 500 plus one of the two 600s.
    proc, url = start_coordinator(
        state, "--settings", str(manifest), env={"MODEL_BOSS_DEVICES": "1500"}
    )
    try:
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def chat(url: str, model: str, max_tokens: int = 8, **x: Any) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a story about a fox."}],
        "max_tokens": max_tokens,
        **x,
    }
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


def states(url: str) -> dict[str, str]:
    models = httpx.get(f"{url}/v1/admin/models").json()["models"]
    return {m["id"]: m["state"] for m in models}


def test_alternating_requests_swap_and_the_pinned_model_stays(coordinator: str) -> None:
    deadline = time.monotonic() + 30
    while states(coordinator)["keeper"] != "ready":  # pinned: loaded at start
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for model in ["left", "right", "left", "right"]:
        r = chat(coordinator, model)
        assert r.status_code == 200, r.text
        now = states(coordinator)
        assert now[model] == "ready"
        assert now["keeper"] == "ready"
        other = "right" if model == "left" else "left"
        assert now[other] != "ready"  # it had to go for this one to fit
    metrics = httpx.get(f"{coordinator}/metrics").text
    evictions = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith('model_boss_evictions_total{reason="room"} ')
    )
    assert evictions >= 3
    gpu = httpx.get(f"{coordinator}/api/v1/gpu/status").json()["gpus"][0]
    assert gpu["used_mb"] <= gpu["capacity_mb"] == 1500


def test_high_request_queued_behind_low_ones_runs_first(coordinator: str) -> None:
    assert chat(coordinator, "left").status_code == 200  # loaded and warm
    done: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        busy = pool.submit(chat, coordinator, "left", 80, x_client_id="busy")
        _wait_running(coordinator, 1)

        def send(client: str, priority: str) -> None:
            r = chat(coordinator, "left", 4, x_client_id=client, x_priority=priority)
            assert r.status_code == 200, r.text
            done.append(client)

        lows = []
        for i in range(2):  # one after the other, so their order is known
            lows.append(pool.submit(send, f"low{i}", "low"))
            _wait_queued(coordinator, i + 1)
        high = pool.submit(send, "high", "high")
        waiting = _wait_queued(coordinator, 3)
        assert [w["client"] for w in waiting] == ["high", "low0", "low1"]
        assert busy.result(timeout=120).status_code == 200
        for future in [high, *lows]:
            future.result(timeout=120)
    assert done[0] == "high"


def _wait_running(url: str, n: int) -> None:
    deadline = time.monotonic() + 20
    while len(httpx.get(f"{url}/v1/queue").json()["running"]) < n:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _wait_queued(url: str, n: int) -> list[Any]:
    deadline = time.monotonic() + 20
    while True:
        waiting: list[Any] = httpx.get(f"{url}/v1/queue").json()["waiting"]
        if len(waiting) >= n:
            return waiting
        assert time.monotonic() < deadline
        time.sleep(0.01)
