"""End to end: `model-boss serve` on the embedded default, serving the real SmolLM2
through a real llama-server, driven by the official openai client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from model_boss.backends import models_dir
from model_boss.backends._demo_model import DEMO_MODEL_FILE
from tests.e2e.conftest import start_coordinator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert (models_dir() / DEMO_MODEL_FILE).is_file(), "run `make setup` to fetch the demo model"
    state = tmp_path_factory.mktemp("state")
    proc, url = start_coordinator(state, "--log-level", "warning")
    try:
        yield url
        slots = httpx.get(f"{url}/v1/pool/status").json()["slots"]
        children = [s["backend"]["pid"] for s in slots if s["backend"] and s["backend"]["pid"]]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal.
    assert proc.returncode in (0, -15), out
    assert "Traceback" not in out, out
    assert children, "the test never loaded the model"
    for pid in children:  # a graceful stop leaves no llama-server behind
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


@pytest.fixture
def oai(coordinator: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{coordinator}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_model_list(oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list().data] == ["smollm2"]
    assert oai.models.retrieve("smollm2").id == "smollm2"


def test_chat(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(
        model="smollm2",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        max_tokens=16,
        temperature=0,
        extra_body={"x_client_id": "e2e", "x_priority": "high"},
    )
    assert out.choices[0].message.content
    assert out.usage is not None
    assert out.usage.completion_tokens > 0


def test_streamed_chat_has_usage_in_the_last_chunk(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=24,
        temperature=0,  # sampled answers were sometimes two tokens long
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    last = chunks[-1]
    assert last.usage is not None
    assert last.usage.completion_tokens > 0


def test_completions(oai: openai.OpenAI) -> None:
    out = oai.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=12)
    assert out.choices[0].text


def test_responses_json_and_streamed_in_official_order(oai: openai.OpenAI) -> None:
    out = oai.responses.create(model="smollm2", input="Say hi.", max_output_tokens=12)
    assert out.output_text
    events = list(
        oai.responses.create(
            model="smollm2", input="Say hi.", instructions="Be brief.", stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert deltas
    tail = [k for k in kinds if k != "response.output_text.delta"][4:]
    assert tail == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.metrics",
        "response.completed",
    ]
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == "".join(d.delta for d in deltas)


def test_a_disconnected_stream_stops_generation_upstream(
    coordinator: str, oai: openai.OpenAI
) -> None:
    stream = oai.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
        max_tokens=2000,
        stream=True,
    )
    for _, _chunk in zip(range(3), stream, strict=False):
        pass
    slots = httpx.get(f"{coordinator}/v1/pool/status").json()["slots"]
    port = slots[0]["backend"]["port"]
    key = _child_key(slots[0]["backend"]["pid"])
    assert _processing(port, key)
    stream.close()  # the client goes away mid-generation
    closed = time.monotonic()
    while _processing(port, key):
        assert time.monotonic() - closed < 3, "llama-server kept generating"
        time.sleep(0.02)
    waiting = httpx.get(f"{coordinator}/v1/queue").json()
    assert waiting["running"] == []


def _child_key(pid: int) -> str:
    """llama-server's own key, read as its owner can: from its environment."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(i[14:].decode() for i in environ if i.startswith(b"LLAMA_API_KEY="))


def _processing(port: int, key: str) -> bool:
    bearer = {"Authorization": f"Bearer {key}"}
    slots = httpx.get(f"http://127.0.0.1:{port}/slots", headers=bearer, timeout=5).json()
    return any(slot["is_processing"] for slot in slots)


def test_queue_and_status_endpoints(coordinator: str) -> None:
    queue = httpx.get(f"{coordinator}/v1/queue").json()
    assert queue["depth"] == 0
    gpu = httpx.get(f"{coordinator}/api/v1/gpu/status").json()
    assert gpu["gpus"] == []
    assert gpu["pools"][0]["pool"].endswith(":ram")
    metrics = httpx.get(f"{coordinator}/metrics").text
    assert "model_boss_leased_bytes" in metrics


def test_the_same_through_the_sdk(coordinator: str) -> None:
    from model_boss import ModelBoss, SyncInferenceClient, SyncModelBoss

    with SyncModelBoss("smollm2", base_url=coordinator, client_id="sdk-e2e") as boss:
        reply = boss.chat(messages=[{"role": "user", "content": "Hi!"}], max_tokens=8)
        assert reply["choices"][0]["message"]["content"]
        chunks = list(
            boss.chat_stream(
                messages=[{"role": "user", "content": "Count to three."}],
                max_tokens=12,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1]["usage"]["completion_tokens"] > 0
        assert boss.complete(prompt="Once upon a time", max_tokens=8)["choices"][0]["text"]
        events = [e["type"] for e in boss.respond_stream(input="Say hi.", max_output_tokens=8)]
        assert events[0] == "response.created"
        assert events[-2:] == ["response.metrics", "response.completed"]
    with SyncInferenceClient(coordinator) as client:
        assert [m["id"] for m in client.models()] == ["smollm2"]
        names = [c["client_id"] for c in client.requestors()]
        assert "sdk-e2e" in names

    async def async_chat() -> str:
        async with ModelBoss("smollm2", base_url=coordinator) as boss:
            out = await boss.respond(input="Say hi.", max_output_tokens=8)
            return str(out["output_text"])

    import asyncio

    assert asyncio.run(async_chat())
