"""Streamed chat and completions end with ``metrics``: on the usage event, or a final one."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai

from tests.api.conftest import Server

METRIC_KEYS = ("engine_queue_wait_ms", "backend_inference_wall_ms", "engine_total_wall_ms")


async def events(server: Server, path: str, body: dict[str, Any]) -> list[Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        async with http.stream("POST", path, json={**body, "stream": True}) as r:
            assert r.status_code == 200
            lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


async def test_a_streamed_chat_with_usage_carries_metrics_on_its_usage_event(
    server: Server,
) -> None:
    chat = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
    out = await events(
        server, "/v1/chat/completions", {**chat, "stream_options": {"include_usage": True}}
    )
    last = out[-1]
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] > 0
    for key in METRIC_KEYS:
        assert last["metrics"][key] >= 0
    assert last["metrics"]["engine_output_tokens"] == last["usage"]["completion_tokens"]
    assert all("metrics" not in e for e in out[:-1])


async def test_a_streamed_chat_or_completion_without_usage_ends_with_a_metrics_event(
    server: Server,
) -> None:
    chat = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
    for path, body in (
        ("/v1/chat/completions", chat),
        ("/v1/completions", {"model": "a", "prompt": "hi"}),
    ):
        out = await events(server, path, body)
        last = out[-1]
        assert last["choices"] == []
        assert last["id"] == out[0]["id"]
        assert last["object"] == out[0]["object"]
        for key in METRIC_KEYS:
            assert last["metrics"][key] >= 0
        assert "".join(
            e["choices"][0]["delta"].get("content") or ""
            if "delta" in e["choices"][0]
            else e["choices"][0].get("text") or ""
            for e in out[:-1]
        )


async def test_the_openai_client_reads_the_metrics_of_a_stream(server: Server) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="none", max_retries=0
    ) as oai:
        stream = await oai.chat.completions.create(
            model="a", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [c async for c in stream]
    assert chunks[-1].model_extra is not None
    assert chunks[-1].model_extra["metrics"]["engine_total_wall_ms"] >= 0
