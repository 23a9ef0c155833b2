"""Error answers and transport failures map onto the SDK's exception tree."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from model_boss.client import (
    AuthenticationFailed,
    ClientError,
    CoordinatorError,
    CoordinatorTimeout,
    CoordinatorUnavailable,
    InferenceClient,
    InvalidRequest,
    ModelNotFound,
    QueueFull,
    UnexpectedResponse,
)
from model_boss.errors import ModelBossError
from model_boss.priority import Priority
from model_boss.testing import free_port
from tests.api.conftest import Server, sim_model
from tests.client.conftest import engine_with

HI = [{"role": "user", "content": "hi"}]


async def test_unknown_model_is_model_not_found(client: InferenceClient) -> None:
    with pytest.raises(ModelNotFound) as info:
        await client.chat("nope", HI)
    err = info.value
    assert (err.status, err.code, err.param, err.type) == (
        404,
        "model_not_found",
        "model",
        "not_found_error",
    )
    assert "nope" in err.message
    assert isinstance(err, LookupError)
    assert isinstance(err, ModelBossError)
    with pytest.raises(ModelNotFound):
        await client.model("nope")
    with pytest.raises(ModelNotFound):
        await client.load("nope")


async def test_a_stream_for_an_unknown_model_raises_when_iterated(
    client: InferenceClient,
) -> None:
    stream = client.chat_stream("nope", HI)
    with pytest.raises(ModelNotFound):
        await anext(stream)
    with pytest.raises(ModelNotFound):
        async for _ in client.responses_stream("nope", "hi"):
            pass


async def test_invalid_requests(client: InferenceClient) -> None:
    with pytest.raises(InvalidRequest) as info:
        await client.chat("a", HI, x_priority="whenever")
    assert (info.value.code, info.value.param) == ("invalid_priority", "x_priority")
    assert isinstance(info.value, ValueError)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(InvalidRequest) as info:
        await client.chat("a", [{"role": "user", "content": [image]}])
    assert info.value.code == "modality_unsupported"
    with pytest.raises(InvalidRequest) as info:
        await client.load("a", overrides={"binary": "/bin/sh"})
    assert info.value.code == "override_not_allowed"


async def test_a_route_that_does_not_exist_is_not_a_missing_model(coordinator: Server) -> None:
    async with InferenceClient(f"{coordinator.url}/elsewhere") as c:
        with pytest.raises(CoordinatorError) as info:
            await c.models()
    assert type(info.value) is CoordinatorError
    assert (info.value.status, info.value.code) == (404, "not_found")


async def test_full_queue_is_queue_full_with_retry_after() -> None:
    engine = engine_with([sim_model("a")], max_queue=0, retry_after_s=7.0)
    async with Server(engine) as srv, InferenceClient(srv.url) as client:
        with pytest.raises(QueueFull) as info:
            await client.chat("a", HI)
        assert (info.value.status, info.value.code, info.value.retry_after) == (
            429,
            "queue_full",
            7.0,
        )
        with pytest.raises(QueueFull):
            await anext(client.chat_stream("a", HI))


async def test_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_with([sim_model("a")])
    async with Server(engine, api_keys=["user-key"], admin_keys=["admin-key"]) as srv:
        async with InferenceClient(srv.url) as anonymous:
            with pytest.raises(AuthenticationFailed) as info:
                await anonymous.models()
            assert (info.value.status, info.value.code) == (401, "missing_key")
            assert (await anonymous.health())["status"] == "ok"  # liveness needs no key
        async with InferenceClient(srv.url, api_key="user-key") as user:
            assert [m["id"] for m in await user.models()] == ["a"]
            with pytest.raises(AuthenticationFailed) as info:
                await user.admin_models()
            assert (info.value.status, info.value.code) == (403, "admin_required")
        monkeypatch.setenv("MODEL_BOSS_API_KEY", "admin-key")
        async with InferenceClient(srv.url) as admin:
            assert [m["id"] for m in await admin.admin_models()] == ["a"]


async def test_an_unreachable_coordinator_fails_fast() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with InferenceClient(url) as client:
        started = time.monotonic()
        with pytest.raises(CoordinatorUnavailable) as info:
            await client.health()
        assert time.monotonic() - started < 2
        assert url in str(info.value)
        assert isinstance(info.value, ConnectionError)
        with pytest.raises(CoordinatorUnavailable):
            await anext(client.chat_stream("a", HI))


async def test_misspelt_queue_fields_and_stream_flags_are_refused() -> None:
    async with InferenceClient("http://127.0.0.1:1") as client:
        with pytest.raises(TypeError, match="x_prio"):
            await client.chat("a", HI, x_prio="high")
        with pytest.raises(TypeError, match="_stream method"):
            await client.chat("a", HI, stream=True)


# -- failures a real coordinator does not produce on demand: a transport that plays them --


def _client(handler: httpx.MockTransport) -> InferenceClient:
    return InferenceClient("http://coordinator.test", transport=handler)


async def test_an_error_event_inside_a_stream_raises() -> None:
    body = (
        b'data: {"object": "chat.completion.chunk", "choices": '
        b'[{"index": 0, "delta": {"content": "he"}}]}\n\n'
        b'data: {"error": {"message": "backend crashed", "code": "backend_error"}}\n\n'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async with _client(httpx.MockTransport(handler)) as client:
        stream = client.chat_stream("a", HI)
        first = await anext(stream)
        assert first["choices"][0]["delta"]["content"] == "he"
        with pytest.raises(CoordinatorError) as info:
            await anext(stream)
    assert (info.value.status, info.value.code, info.value.message) == (
        502,
        "backend_error",
        "backend crashed",
    )


async def test_an_answer_that_is_not_json_is_unexpected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>a proxy</html>")

    async with _client(httpx.MockTransport(handler)) as client:
        with pytest.raises(UnexpectedResponse, match="proxy"):
            await client.health()


async def test_an_error_that_is_not_json_keeps_its_text_and_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="Bad Gateway")

    async with _client(httpx.MockTransport(handler)) as client:
        with pytest.raises(CoordinatorError) as info:
            await client.health()
    assert (info.value.status, info.value.message, info.value.code) == (502, "Bad Gateway", None)


async def test_queue_full_without_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": {"message": "busy", "code": "queue_full"}})

    async with _client(httpx.MockTransport(handler)) as client:
        with pytest.raises(QueueFull) as info:
            await client.chat("a", HI)
    assert info.value.retry_after is None


async def test_a_read_timeout_is_coordinator_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    async with _client(httpx.MockTransport(handler)) as client:
        with pytest.raises(CoordinatorTimeout) as info:
            await client.chat("a", HI)
    assert isinstance(info.value, TimeoutError)


async def test_a_connection_broken_mid_stream_is_unavailable() -> None:
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'data: {"choices": []}\n\n'
            raise httpx.RemoteProtocolError("peer closed connection")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Broken(), headers={"content-type": "text/event-stream"})

    async with _client(httpx.MockTransport(handler)) as client:
        stream = client.chat_stream("a", HI)
        assert await anext(stream) == {"choices": []}
        with pytest.raises(CoordinatorUnavailable, match="peer closed"):
            await anext(stream)


async def test_the_body_carries_queue_fields_and_leaves_out_none() -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.headers["authorization"] == "Bearer k"
        return httpx.Response(200, json={"ok": True})

    transport = httpx.MockTransport(handler)
    async with InferenceClient(
        "http://c.test", api_key="k", client_id="me", transport=transport
    ) as client:
        await client.chat("m", ({"role": "user", "content": "hi"},), x_priority="batch")
        await client.chat("m", HI, x_client_id="other", temperature=None, x_stay_warm=0)
        await client.embeddings("m", ("x", "y"), x_cooldown=2.5, x_priority=Priority.HIGH)
    assert seen == [
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "x_priority": "batch",
            "x_client_id": "me",
        },
        {"model": "m", "messages": HI, "x_client_id": "other", "x_stay_warm": 0},
        {
            "model": "m",
            "input": ["x", "y"],
            "x_cooldown": 2.5,
            "x_priority": 5,
            "x_client_id": "me",
        },
    ]


def test_every_error_is_a_client_error() -> None:
    for cls in (CoordinatorUnavailable, CoordinatorTimeout, UnexpectedResponse, CoordinatorError):
        assert issubclass(cls, ClientError)
    for cls in (InvalidRequest, AuthenticationFailed, ModelNotFound, QueueFull):
        assert issubclass(cls, CoordinatorError)


def test_a_503_with_retry_after_says_when_to_try_again() -> None:
    from model_boss.client import ModelUnavailable
    from model_boss.client._errors import error_from_answer

    body = b'{"error": {"message": "other programs hold it", "code": "model_unavailable"}}'
    error = error_from_answer(503, {"retry-after": "5"}, body)
    assert isinstance(error, ModelUnavailable)
    assert (error.status, error.retry_after, error.message) == (503, 5.0, "other programs hold it")
    assert error_from_answer(503, {}, body).retry_after is None
