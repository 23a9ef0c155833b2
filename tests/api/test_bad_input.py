"""Bad input gets a 4xx in the OpenAI error shape, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, make_engine, sim_model


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        yield c


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code


async def test_invalid_json_is_a_400(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/v1/chat/completions",
        content=b'{"model": "a", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert_openai_error(r, 400)
    assert "JSON" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "a"},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"model": "a", "messages": []},
        {"model": "a", "messages": "hi"},
        {"model": 7, "messages": [{"role": "user", "content": "hi"}]},
        {"model": "a", "messages": [{"role": "wizard", "content": "hi"}]},
        {"model": "a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"},
        {"model": "a", "messages": [{"role": "user", "content": "hi"}], "temperature": 9},
        {"model": "a", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
        {"model": "a", "messages": [{"role": "user", "content": "hi"}], "x_stay_warm": -1},
        [1, 2, 3],
        "just a string",
    ],
)
async def test_wrong_shapes_and_types_are_400s(http: httpx.AsyncClient, body: Any) -> None:
    assert_openai_error(await http.post("/v1/chat/completions", json=body), 400)


async def test_unknown_priority_is_a_400(http: httpx.AsyncClient) -> None:
    body = {"model": "a", "messages": [{"role": "user", "content": "hi"}], "x_priority": "asap"}
    assert_openai_error(await http.post("/v1/chat/completions", json=body), 400, "invalid_priority")
    headers = {"X-Priority": "whenever"}
    body.pop("x_priority")
    r = await http.post("/v1/chat/completions", json=body, headers=headers)
    assert_openai_error(r, 400, "invalid_priority")


async def test_unknown_model_is_a_404(http: httpx.AsyncClient) -> None:
    body = {"model": "ghost", "messages": [{"role": "user", "content": "hi"}]}
    assert_openai_error(await http.post("/v1/chat/completions", json=body), 404, "model_not_found")
    assert_openai_error(await http.get("/v1/models/ghost"), 404, "model_not_found")


async def test_unknown_route_and_method_are_openai_errors(http: httpx.AsyncClient) -> None:
    assert_openai_error(await http.get("/v1/nothing-here"), 404)
    assert_openai_error(await http.get("/v1/chat/completions"), 405)


async def test_oversized_body_is_a_413() -> None:
    async with Server(make_engine([sim_model("a")]), max_body_bytes=1000) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            big = {"model": "a", "messages": [{"role": "user", "content": "x" * 5000}]}
            assert_openai_error(await http.post("/v1/chat/completions", json=big), 413)
            small = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
            assert (await http.post("/v1/chat/completions", json=small)).status_code == 200


async def test_responses_without_input_is_a_400(http: httpx.AsyncClient) -> None:
    assert_openai_error(await http.post("/v1/responses", json={"model": "a"}), 400)
    only_assistant = {"model": "a", "messages": [{"role": "assistant", "content": "x"}]}
    assert_openai_error(await http.post("/v1/responses", json=only_assistant), 400)


async def test_admin_override_outside_the_allow_list_is_refused(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/admin/models/a/load", json={"overrides": {"path": "/bin/sh"}})
    assert_openai_error(r, 400, "override_not_allowed")
    r = await http.post("/v1/admin/models/a/load", json={"overrides": {"load_s": -5}})
    assert_openai_error(r, 400, "invalid_override")
    r = await http.post("/v1/admin/models/ghost/load", json={})
    assert_openai_error(r, 404)
    r = await http.post("/v1/admin/models/a/load", json={"replicas": 2})
    assert_openai_error(r, 400, "too_many_replicas")


async def test_keys_guard_inference_and_admin() -> None:
    engine = make_engine([sim_model("a")])
    async with Server(engine, api_keys=["user-key"], admin_keys=["admin-key"]) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
            assert_openai_error(await http.post("/v1/chat/completions", json=body), 401)
            wrong = {"Authorization": "Bearer nope"}
            r = await http.post("/v1/chat/completions", json=body, headers=wrong)
            assert_openai_error(r, 401, "invalid_key")
            user = {"Authorization": "Bearer user-key"}
            r = await http.post("/v1/chat/completions", json=body, headers=user)
            assert r.status_code == 200
            assert_openai_error(await http.get("/v1/admin/models", headers=user), 403)
            admin = {"Authorization": "Bearer admin-key"}
            assert (await http.get("/v1/admin/models", headers=admin)).status_code == 200
            assert (await http.get("/health")).status_code == 200


async def test_remote_models_need_allow_remote() -> None:
    remote = sim_model("remote", backend="simulated")
    remote = type(remote)(
        profile=remote.profile, backend="openai_remote", entry={}, modalities=remote.modalities
    )
    async with Server(make_engine([remote])) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            body = {"model": "remote", "messages": [{"role": "user", "content": "hi"}]}
            r = await http.post("/v1/chat/completions", json=body)
            assert_openai_error(r, 403, "remote_not_allowed")


async def test_an_oversized_chunked_body_is_a_413_too() -> None:
    async with Server(make_engine([sim_model("a")]), max_body_bytes=1000) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:

            async def chunks() -> Any:
                yield b'{"model": "a", "messages": [{"role": "user", "content": "'
                for _ in range(10):
                    yield b"x" * 500
                yield b'"}]}'

            r = await http.post(
                "/v1/chat/completions",
                content=chunks(),
                headers={"content-type": "application/json"},
            )
            assert_openai_error(r, 413, "body_too_large")
            small = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
            assert (await http.post("/v1/chat/completions", json=small)).status_code == 200


async def test_admin_keys_alone_guard_only_the_admin_endpoints() -> None:
    async with Server(make_engine([sim_model("a")]), admin_keys=["admin-key"]) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
            assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
            assert_openai_error(await http.get("/v1/admin/models"), 401)
            admin = {"Authorization": "Bearer admin-key"}
            assert (await http.get("/v1/admin/models", headers=admin)).status_code == 200
