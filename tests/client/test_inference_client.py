"""InferenceClient and ModelBoss against a real coordinator over simulated backends."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from model_boss.client import InferenceClient, ModelBoss
from model_boss.engine import EngineModel
from tests.api.conftest import Server, sim_model
from tests.client.conftest import engine_with

HI = [{"role": "user", "content": "hi"}]


async def test_chat_returns_the_completion_with_metrics(client: InferenceClient) -> None:
    out = await client.chat("a", HI, max_tokens=16)
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"]
    assert out["metrics"]["backend_inference_wall_ms"] >= 0


async def test_chat_stream_yields_parsed_chunks_until_done(client: InferenceClient) -> None:
    chunks = [c async for c in client.chat_stream("a", HI, stream_options={"include_usage": True})]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text
    assert chunks[-1]["usage"]["completion_tokens"] > 0


async def test_a_stream_left_early_is_closed_and_frees_its_slot() -> None:
    # 8 tokens at 2 tokens/s: left alone, the stream would run for 3.5 s.
    entry = {"simulated": {"load_s": 0.02, "tokens_per_s": 2, "output_tokens": 8}}
    async with Server(engine_with([sim_model("s", entry=entry)])) as srv:
        async with InferenceClient(srv.url) as client:
            started = time.monotonic()
            async with aclosing(client.chat_stream("s", HI)) as stream:
                async for _ in stream:
                    break
            while (await client.queue())["running"]:
                assert time.monotonic() - started < 2.5, "the abandoned stream kept running"
                await asyncio.sleep(0.02)


async def test_completions_plain_and_streamed(client: InferenceClient) -> None:
    out = await client.completions("a", "once upon")
    assert out["choices"][0]["text"]
    chunks = [c async for c in client.completions_stream("a", "once upon")]
    assert chunks
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"])


async def test_embeddings_one_per_input(client: InferenceClient) -> None:
    out = await client.embeddings("a", ("x", "y", "z"))
    assert [d["index"] for d in out["data"]] == [0, 1, 2]
    assert all(len(d["embedding"]) > 0 for d in out["data"])


async def test_images(client: InferenceClient) -> None:
    out = await client.images("a", "a cat", size="256x256")
    assert out["data"][0]["b64_json"]


async def test_responses_json(client: InferenceClient) -> None:
    out = await client.responses("a", "hi", instructions="be brief")
    assert out["object"] == "response"
    assert out["status"] == "completed"
    assert out["output_text"]
    assert out["usage"]["output_tokens"] > 0


async def test_responses_stream_events_in_order(client: InferenceClient) -> None:
    events = [e async for e in client.responses_stream("a", "hi")]
    kinds = [e["type"] for e in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-5:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.metrics",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert events[-1]["response"]["output_text"] == deltas


async def test_models_and_one_model(client: InferenceClient) -> None:
    assert sorted(m["id"] for m in await client.models()) == ["a", "b", "vision"]
    card = await client.model("vision")
    assert card["id"] == "vision"
    assert card["modalities"] == ["image", "text"]


async def test_status_endpoints(client: InferenceClient) -> None:
    await client.chat("a", HI)
    health = await client.health()
    assert health["status"] == "ok"
    assert health["models"] == 3
    queue = await client.queue()
    assert queue == {"depth": 0, "waiting": [], "running": []}
    pool = await client.pool_status()
    assert [p["capacity_mb"] for p in pool["pools"]] == [10_000]
    assert [(s["model"], s["state"]) for s in pool["slots"]] == [("a", "ready")]
    gpu = await client.gpu_status()
    assert [p["capacity_mb"] for p in gpu["gpus"]] == [10_000]
    assert gpu["gpus"][0]["used_mb"] == 4000


def slow_model(name: str = "slow", load_s: float = 1.5) -> EngineModel:
    """Loads in ``load_s`` and answers 8 tokens at 20 tokens/s: requests visibly wait, then run."""
    entry = {"simulated": {"load_s": load_s, "tokens_per_s": 20, "output_tokens": 8}}
    return sim_model(name, load_s=load_s, entry=entry)


async def _poll_queue(
    client: InferenceClient, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        queue = await client.queue()
        if ready(queue):
            return queue
        assert time.monotonic() < deadline, f"the queue never got there: {queue}"
        await asyncio.sleep(0.01)


async def test_queue_shows_waiting_then_running_requests() -> None:
    async with Server(engine_with([slow_model()])) as srv, InferenceClient(srv.url) as client:
        first = asyncio.create_task(client.chat("slow", HI, x_client_id="first"))
        await _poll_queue(client, lambda q: q["depth"] == 1)
        later = asyncio.create_task(client.chat("slow", HI, x_client_id="later", x_priority=1))
        try:
            queue = await _poll_queue(client, lambda q: q["depth"] == 2)
            waiting = [(w["position"], w["client"], w["priority"]) for w in queue["waiting"]]
            assert waiting == [(1, "later", 1), (2, "first", 10)]  # urgent goes first
            assert all(w["model"] == "slow" and w["age_s"] >= 0 for w in queue["waiting"])
            queue = await _poll_queue(client, lambda q: bool(q["running"]))
            assert {r["client"] for r in queue["running"]} <= {"first", "later"}
        finally:
            await asyncio.gather(first, later)
        assert await client.queue() == {"depth": 0, "waiting": [], "running": []}


async def test_queue_fields_reach_the_coordinator(client: InferenceClient) -> None:
    await client.chat("a", HI, x_client_id="svc-a", x_priority="batch")
    await client.chat("b", HI)  # the constructor's client_id is the default
    clients = {c["client_id"]: c for c in await client.requestors()}
    assert clients["svc-a"]["last_priority"] == 50
    assert clients["svc-a"]["models"] == {"a": 1}
    assert clients["tests"]["models"] == {"b": 1}


async def test_x_cooldown_spaces_one_clients_requests(client: InferenceClient) -> None:
    await client.chat("a", HI, x_client_id="slow", x_cooldown=0.4)
    second = await client.chat("a", HI, x_client_id="slow", x_cooldown=0.4)
    assert second["metrics"]["engine_queue_wait_ms"] >= 300
    other = await client.chat("a", HI, x_client_id="fast")
    assert other["metrics"]["engine_queue_wait_ms"] < 300


async def test_x_stay_warm_zero_unloads_after_the_request(client: InferenceClient) -> None:
    await client.chat("b", HI)
    await client.chat("a", HI, x_stay_warm=0)
    deadline = time.monotonic() + 5
    while True:
        models = {s["model"] for s in (await client.pool_status())["slots"]}
        if "a" not in models:
            break
        assert time.monotonic() < deadline, "a stayed loaded despite x_stay_warm=0"
        await asyncio.sleep(0.02)
    assert models == {"b"}  # the default stay-warm keeps b


async def test_admin_load_with_replicas_and_overrides_then_unload() -> None:
    base = sim_model("r")
    model = dataclasses.replace(base, profile=dataclasses.replace(base.profile, replica_max=2))
    async with Server(engine_with([model])) as srv, InferenceClient(srv.url) as client:
        (listed,) = await client.admin_models()
        assert (listed["id"], listed["state"], listed["replicas"]["max"]) == ("r", "unloaded", 2)
        assert "tokens_per_s" in listed["capabilities"]["live_overrides"]
        loaded = await client.load("r", replicas=2, overrides={"tokens_per_s": 500})
        assert loaded == {"id": "r", "state": "ready"}
        deadline = time.monotonic() + 5
        while (listed := (await client.admin_models())[0])["replicas"]["loaded"] < 2:
            assert time.monotonic() < deadline, f"never two replicas: {listed['replicas']}"
            await asyncio.sleep(0.02)
        assert listed["overrides"]["simulated"]["tokens_per_s"] == 500
        assert (await client.admin_memory())["model_estimates_mb"] == {"r": 4000}
        assert (await client.unload("r"))["id"] == "r"
        deadline = time.monotonic() + 5
        while (await client.model("r"))["state"] != "unloaded":
            assert time.monotonic() < deadline, "r never unloaded"
            await asyncio.sleep(0.02)


async def test_admin_load_without_waiting_answers_before_the_model_is_ready() -> None:
    async with Server(engine_with([slow_model()])) as srv:
        async with InferenceClient(srv.url) as client:
            out = await client.load("slow", wait=False)
            assert out["id"] == "slow"
            assert out["state"] != "ready"
            deadline = time.monotonic() + 5
            while (await client.model("slow"))["state"] != "ready":
                assert time.monotonic() < deadline, "the load asked without waiting never ran"
                await asyncio.sleep(0.02)


async def test_model_boss_is_bound_to_one_model(coordinator: Server) -> None:
    async with ModelBoss(model_id="b", base_url=coordinator.url, client_id="boss") as boss:
        reply = await boss.chat(messages=HI, x_priority="batch", x_stay_warm=60)
        assert reply["model"] == "b"
        chunks = [c async for c in boss.chat_stream(messages=HI)]
        assert any(c["choices"] and c["choices"][0]["delta"].get("content") for c in chunks)
        assert (await boss.complete("once"))["choices"][0]["text"]
        assert len((await boss.embed(["x", "y"]))["data"]) == 2
        assert (await boss.generate_image("a cat", size="64x64"))["data"][0]["b64_json"]
        assert (await boss.respond("hi", instructions="short"))["output_text"]
        kinds = [e["type"] async for e in boss.respond_stream("hi")]
        assert kinds[-1] == "response.completed"
        assert (await boss.info())["id"] == "b"
        clients = {c["client_id"]: c for c in await boss.client.requestors()}
        assert clients["boss"]["models"] == {"b": 7}
        assert clients["boss"]["last_priority"] == 10


async def test_model_boss_shares_a_client_it_does_not_close(
    client: InferenceClient,
) -> None:
    async with ModelBoss("a", client=client) as boss:
        await boss.chat(HI)
    assert (await client.health())["status"] == "ok"  # still open
