"""Queueing through HTTP: priorities, /v1/queue, disconnects, swaps, pinning."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, make_engine, sim_model

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def body(model: str, **x: Any) -> dict[str, Any]:
    return {"model": model, **CHAT, **x}


async def wait_for_queue(http: httpx.AsyncClient, n: int, within_s: float = 3.0) -> list[Any]:
    deadline = time.monotonic() + within_s
    while True:
        waiting: list[Any] = (await http.get("/v1/queue")).json()["waiting"]
        if len(waiting) == n:
            return waiting
        assert time.monotonic() < deadline, f"queue never reached {n}: {waiting}"
        await asyncio.sleep(0.01)


@pytest.fixture
async def slow_server() -> Any:
    slow = sim_model("slow", tokens_per_s=4.0)  # 8 tokens: about 2 s per request
    async with Server(make_engine([slow, sim_model("a")])) as server:
        yield server


async def test_high_request_behind_low_ones_runs_first_and_queue_shows_it(
    slow_server: Server,
) -> None:
    async with httpx.AsyncClient(base_url=slow_server.url, timeout=30) as http:
        first = asyncio.create_task(http.post("/v1/chat/completions", json=body("slow")))
        await wait_for_queue(http, 0)
        await asyncio.sleep(0.2)  # the first request is running on the only slot
        finished: list[str] = []

        async def send(client: str, priority: str) -> None:
            r = await http.post(
                "/v1/chat/completions",
                json=body("slow", x_client_id=client, x_priority=priority),
            )
            assert r.status_code == 200
            finished.append(client)

        lows = []
        for i in range(2):  # one after the other, so their order is known
            lows.append(asyncio.create_task(send(f"low{i}", "low")))
            await wait_for_queue(http, i + 1)
        high = asyncio.create_task(send("high", "high"))
        waiting = await wait_for_queue(http, 3)
        assert [w["client"] for w in waiting] == ["high", "low0", "low1"]
        assert [w["position"] for w in waiting] == [1, 2, 3]
        assert waiting[0]["priority"] == 5
        assert all(w["age_s"] >= 0 for w in waiting)
        await asyncio.gather(first, high, *lows)
        assert finished[0] == "high"


async def test_a_client_that_disconnects_leaves_the_queue_within_100ms(
    slow_server: Server,
) -> None:
    async with (
        httpx.AsyncClient(base_url=slow_server.url, timeout=30) as http,
        httpx.AsyncClient(base_url=slow_server.url, timeout=30) as leaver,
    ):
        busy = asyncio.create_task(http.post("/v1/chat/completions", json=body("slow")))
        await asyncio.sleep(0.2)
        gone = asyncio.create_task(
            leaver.post("/v1/chat/completions", json=body("slow", x_client_id="leaver"))
        )
        await wait_for_queue(http, 1)
        gone.cancel()  # closes the connection
        with pytest.raises(asyncio.CancelledError):
            await gone
        closed = time.monotonic()
        await wait_for_queue(http, 0, within_s=1.0)
        assert time.monotonic() - closed < 0.1
        await busy
        stats = (await http.get("/v1/requestors")).json()["clients"]
        assert next(c for c in stats if c["client_id"] == "leaver")["cancelled"] == 1


async def test_models_that_do_not_fit_together_swap_and_pinned_stays() -> None:
    models = [sim_model("x", 6000), sim_model("y", 6000), sim_model("pinned", 3000, pin=True)]
    async with Server(make_engine(models, capacity_mb=10_000)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for name in ["x", "y", "x", "y"]:
                r = await http.post("/v1/chat/completions", json=body(name))
                assert r.status_code == 200
                assert r.json()["metrics"]["engine_queue_wait_ms"] >= 0
            admin = (await http.get("/v1/admin/models")).json()["models"]
            state = {m["id"]: m["state"] for m in admin}
            assert state["pinned"] == "ready"
            assert server.engine.counters["loads"] >= 5  # pinned once, x and y twice each
            metrics = (await http.get("/metrics")).text
            assert "model_boss_evictions" in metrics
            assert 'model_boss_requests_total{client="anonymous",model="x",outcome="ok"} 2.0' in (
                metrics
            )
            gpu = (await http.get("/api/v1/gpu/status")).json()
            assert gpu["gpus"][0]["used_mb"] <= 10_000


async def test_admin_load_unload_and_pool_status() -> None:
    async with Server(make_engine([sim_model("a")])) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            r = await http.post("/v1/admin/models/a/load", json={"overrides": {"load_s": 0.01}})
            assert r.json() == {"id": "a", "state": "ready"}
            slots = (await http.get("/v1/pool/status")).json()["slots"]
            assert [s["state"] for s in slots] == ["ready"]
            models = (await http.get("/v1/admin/models")).json()["models"]
            assert models[0]["overrides"] == {"simulated": {"load_s": 0.01, **_sim_defaults()}}
            r = await http.post("/v1/admin/models/a/unload")
            assert r.status_code == 200
            deadline = time.monotonic() + 3
            while (await http.get("/v1/admin/models")).json()["models"][0]["state"] != "unloaded":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            memory = (await http.get("/v1/admin/gpu-memory")).json()
            assert memory["pools"][0]["used_mb"] == 0
            assert memory["model_estimates_mb"] == {"a": 4000}


def _sim_defaults() -> dict[str, Any]:
    return {"tokens_per_s": 2000.0, "output_tokens": 8}


async def test_a_full_queue_answers_429_with_retry_after() -> None:
    slow = sim_model("slow", tokens_per_s=4.0)
    async with Server(make_engine([slow], max_queue=1)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            running = asyncio.create_task(http.post("/v1/chat/completions", json=body("slow")))
            await asyncio.sleep(0.2)
            queued = asyncio.create_task(http.post("/v1/chat/completions", json=body("slow")))
            await wait_for_queue(http, 1)
            r = await http.post("/v1/chat/completions", json=body("slow"))
            assert r.status_code == 429
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "queue_full"
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert (await running).status_code == 200
            assert (await queued).status_code == 200  # nothing already accepted is lost
