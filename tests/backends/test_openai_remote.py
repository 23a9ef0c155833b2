"""openai_remote against a local OpenAI-compatible server that checks the bearer key."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from model_boss.backends import (
    BackendNotRunning,
    BackendStartError,
    BackendState,
    OpenAIRemoteBackend,
    OpenAIRemoteOptions,
    UnsupportedOperation,
    UpstreamError,
    create_backend,
    free_port,
)
from model_boss.errors import ConfigError

KEY = "sk-test-7f3a9c1e5b2d4f6a8c0e"
KEY_ENV = "MB_TEST_REMOTE_KEY"


@dataclass
class Upstream:
    base_url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)


def _unauthorised(request: web.Request) -> web.Response | None:
    got = request.headers.get("Authorization", "")
    if got == f"Bearer {KEY}":
        return None
    # As real providers do, the answer echoes (part of) the key it was given.
    message = f"Incorrect API key provided: {got.removeprefix('Bearer ')}"
    return web.json_response({"error": {"message": message}}, status=401)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    port = free_port()
    state = Upstream(base_url=f"http://127.0.0.1:{port}/v1")

    async def models(request: web.Request) -> web.StreamResponse:
        return _unauthorised(request) or web.json_response({"data": [{"id": "provider-model"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        if (denied := _unauthorised(request)) is not None:
            return denied
        body = await request.json()
        state.bodies.append(body)
        assert request.transport is not None
        state.peers.append(request.transport.get_extra_info("peername"))
        if state.fail_next:
            return web.json_response({"error": "busy"}, status=state.fail_next.pop(0))
        if not body.get("stream"):
            message = {"role": "assistant", "content": "remote says hi"}
            return web.json_response({"model": body["model"], "choices": [{"message": message}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in ("remote", " says", " hi"):
            chunk = {"choices": [{"delta": {"content": piece}}]}
            # One event split over two writes: the client must reassemble it.
            data = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            await response.write(data[:7])
            await response.write(data[7:])
            if body.get("slow"):
                await asyncio.sleep(0.2)
        await response.write(b"data: [DONE]\n\n")
        return response

    async def embeddings(request: web.Request) -> web.StreamResponse:
        if (denied := _unauthorised(request)) is not None:
            return denied
        body = await request.json()
        state.bodies.append(body)
        return web.json_response({"data": [{"index": 0, "embedding": [0.5, 0.25]}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state
    await runner.cleanup()


def remote_entry(upstream: Upstream, **remote: Any) -> dict[str, Any]:
    table = {
        "base_url": upstream.base_url,
        "api_key_env": KEY_ENV,
        "model": "provider-model",
        "timeout_s": 10,
        **remote,
    }
    return {"backend": "openai_remote", "openai_remote": table}


async def test_requests_carry_the_key_and_the_upstream_model_name(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = create_backend("openai_remote", "frontier", remote_entry(upstream))
    await backend.start()
    try:
        answer = await backend.chat({"model": "frontier", "messages": [], "stream": True})
        assert answer["choices"][0]["message"]["content"] == "remote says hi"
        assert upstream.bodies[-1]["model"] == "provider-model"
        assert upstream.bodies[-1]["stream"] is False

        events = [event async for event in backend.chat_stream({"messages": []})]
        assert events[-1] == b"data: [DONE]\n\n"
        text = "".join(json.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:-1])
        assert text == "remote says hi"

        vectors = await backend.embeddings({"input": "x"})
        assert vectors["data"][0]["embedding"] == [0.5, 0.25]
        with pytest.raises(UnsupportedOperation):
            await backend.images({"prompt": "x"})
        assert (await backend.health()).ok
        assert (await backend.footprint()).ram_mb == 0
    finally:
        await backend.stop()
    with pytest.raises(BackendNotRunning):
        await backend.chat({"messages": []})


async def test_the_key_is_absent_from_logs_errors_and_status(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, KEY)
    options = OpenAIRemoteOptions.from_manifest(
        "frontier", remote_entry(upstream, health_check="models")
    )
    backend = OpenAIRemoteBackend("frontier", options)
    await backend.start()
    seen: list[str] = [repr(options), repr(backend), json.dumps(backend.status())]
    await backend.chat({"messages": []})
    seen += [e.decode() async for e in backend.chat_stream({"messages": []})]
    seen.append(str(await backend.health()))
    await backend.stop()

    wrong = "sk-wrong-0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, wrong)
    backend = OpenAIRemoteBackend(
        "frontier", options.__class__.from_manifest("f", remote_entry(upstream))
    )
    await backend.start()
    with pytest.raises(UpstreamError) as caught:
        await backend.chat({"messages": []})
    assert caught.value.status == 401
    assert "Incorrect API key provided: ***" in caught.value.body
    seen += [str(caught.value), caught.value.body, json.dumps(backend.status())]
    await backend.stop()

    seen += [record.getMessage() for record in caplog.records]
    seen += [str(record.args) for record in caplog.records]
    assert backend.status()["api_key_env"] == KEY_ENV
    assert backend.status()["api_key_set"] is True
    for text in seen:
        assert KEY not in text
        assert wrong not in text


async def test_a_missing_key_variable_fails_start_naming_the_variable(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    backend = create_backend("openai_remote", "frontier", remote_entry(upstream))
    with pytest.raises(BackendStartError, match=f"environment variable {KEY_ENV} is not set"):
        await backend.start()
    assert backend.state is BackendState.FAILED


async def test_a_models_health_check_fails_start_on_a_rejected_key(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-value-000")
    entry = remote_entry(upstream, health_check="models")
    backend = create_backend("openai_remote", "frontier", entry)
    with pytest.raises(BackendStartError, match="answered 401") as caught:
        await backend.start()
    assert "sk-wrong-key-value-000" not in str(caught.value)


async def test_retries_ride_over_busy_answers(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    patient = create_backend(
        "openai_remote", "a", remote_entry(upstream, max_retries=2, retry_backoff_s=0.01)
    )
    impatient = create_backend("openai_remote", "b", remote_entry(upstream))
    await patient.start()
    await impatient.start()
    try:
        upstream.fail_next[:] = [503, 429]
        answer = await patient.chat({"messages": []})
        assert answer["choices"][0]["message"]["content"] == "remote says hi"
        assert len(upstream.bodies) == 3

        upstream.fail_next[:] = [503]
        with pytest.raises(UpstreamError) as caught:
            await impatient.chat({"messages": []})
        assert caught.value.status == 503
    finally:
        await patient.stop()
        await impatient.stop()


async def test_an_unreachable_upstream_is_an_upstream_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    entry = {
        "openai_remote": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "api_key_env": KEY_ENV}
    }
    backend = create_backend("openai_remote", "gone", entry)
    await backend.start()  # config_only: no call at start
    try:
        with pytest.raises(UpstreamError, match="failed") as caught:
            await backend.chat({"messages": []})
        assert caught.value.status is None
    finally:
        await backend.stop()


@pytest.mark.parametrize(
    ("remote", "message"),
    [
        ({}, "openai_remote.base_url: is required"),
        ({"base_url": "ftp://x"}, "openai_remote.base_url: must start with http"),
        ({"base_url": "http://x", "max_retries": -1}, "openai_remote.max_retries: must be >= 0"),
        (
            {"base_url": "http://x", "health_check": "ping"},
            "openai_remote.health_check: expected one of",
        ),
        ({"base_url": "http://x", "api_key": "sk-inline"}, "openai_remote.api_key: unknown key"),
    ],
)
def test_bad_remote_values_are_config_errors(remote: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OpenAIRemoteOptions.from_manifest("m", {"openai_remote": remote})


async def test_a_stream_read_to_the_end_keeps_its_connection_an_abandoned_one_closes_it(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = create_backend("openai_remote", "frontier", remote_entry(upstream))
    await backend.start()
    try:
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        for _ in range(2):
            assert [c async for c in backend.chat_stream(body)][-1] == b"data: [DONE]\n\n"
        assert upstream.peers[0] == upstream.peers[1]  # the pooled connection was reused
        stream = backend.chat_stream({**body, "slow": True})
        await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]  # the client left mid-stream
        assert [c async for c in backend.chat_stream(body)]
        assert upstream.peers[3] != upstream.peers[2]  # the abandoned connection was closed
    finally:
        await backend.stop()
