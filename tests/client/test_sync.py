"""The blocking twins against a coordinator served from a background thread."""

from __future__ import annotations

import pytest

from model_boss.client import (
    CoordinatorUnavailable,
    ModelNotFound,
    SyncInferenceClient,
    SyncModelBoss,
)
from model_boss.testing import free_port
from tests.client.conftest import ThreadedServer

HI = [{"role": "user", "content": "hi"}]


def test_sync_client_covers_the_api(threaded_coordinator: ThreadedServer) -> None:
    with SyncInferenceClient(threaded_coordinator.url, client_id="sync") as client:
        assert client.chat("a", HI, x_priority="batch")["choices"][0]["message"]["content"]
        chunks = list(client.chat_stream("a", HI))
        assert "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert client.completions("a", "once")["choices"][0]["text"]
        assert list(client.completions_stream("a", "once"))
        assert len(client.embeddings("a", ["x", "y"])["data"]) == 2
        assert client.images("a", "a cat", size="64x64")["data"][0]["b64_json"]
        assert client.responses("a", "hi", instructions="short")["output_text"]
        kinds = [e["type"] for e in client.responses_stream("a", "hi", x_priority="low")]
        assert (kinds[0], kinds[-1]) == ("response.created", "response.completed")
        assert sorted(m["id"] for m in client.models()) == ["a", "b", "vision"]
        assert client.model("b")["state"] == "unloaded"
        assert client.queue()["depth"] == 0
        assert client.health()["status"] == "ok"
        assert [s["model"] for s in client.pool_status()["slots"]] == ["a"]
        assert client.gpu_status()["gpus"][0]["used_mb"] == 4000
        (me,) = client.requestors()
        assert (me["client_id"], me["last_priority"], me["models"]) == ("sync", 20, {"a": 8})
        assert client.load("b") == {"id": "b", "state": "ready"}
        assert {m["id"]: m["state"] for m in client.admin_models()}["b"] == "ready"
        assert client.admin_memory()["model_estimates_mb"]["b"] == 4000
        assert client.unload("b")["id"] == "b"
        with pytest.raises(ModelNotFound):
            client.chat("nope", HI)
        with pytest.raises(ModelNotFound):
            next(client.chat_stream("nope", HI))


def test_a_sync_stream_left_early_can_be_closed(threaded_coordinator: ThreadedServer) -> None:
    with SyncInferenceClient(threaded_coordinator.url) as client:
        stream = client.chat_stream("a", HI)
        assert next(stream)["object"] == "chat.completion.chunk"
        stream.close()
        assert client.health()["status"] == "ok"


def test_sync_model_boss(threaded_coordinator: ThreadedServer) -> None:
    with SyncModelBoss(model_id="b", base_url=threaded_coordinator.url) as boss:
        assert boss.chat(messages=HI, x_client_id="svc", x_priority="batch")["model"] == "b"
        assert [c for c in boss.chat_stream(HI) if c["choices"]]
        assert boss.complete("once")["choices"][0]["text"]
        assert list(boss.complete_stream("once"))
        assert len(boss.embed("x")["data"]) == 1
        assert boss.generate_image("a cat", width=64, height=64)["data"]
        assert boss.respond("hi")["status"] == "completed"
        assert [e["type"] for e in boss.respond_stream("hi")][-1] == "response.completed"
        assert boss.info()["state"] == "ready"
        clients = {c["client_id"]: c for c in boss.client.requestors()}
        assert clients["svc"]["last_priority"] == 50


def test_sync_client_on_an_unreachable_coordinator() -> None:
    with SyncInferenceClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(CoordinatorUnavailable):
            client.health()
        with pytest.raises(CoordinatorUnavailable):
            next(client.chat_stream("a", HI))
