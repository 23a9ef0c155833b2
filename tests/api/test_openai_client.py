"""The official openai client against the coordinator (simulated backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from tests.api.conftest import Server


@pytest.fixture
async def oai(server: Server) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0) as c:
        yield c


async def test_chat_completion(oai: openai.AsyncOpenAI) -> None:
    out = await oai.chat.completions.create(
        model="a",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"x_client_id": "tests", "x_priority": "high"},
    )
    assert out.choices[0].message.content
    assert out.model_extra is not None
    assert out.model_extra["metrics"]["backend_inference_wall_ms"] >= 0


async def test_streamed_chat_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="a",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


async def test_responses_streamed_events_in_order(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.responses.create(model="a", input="hi", stream=True)
    kinds = [event.type async for event in stream]
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


async def test_responses_json(oai: openai.AsyncOpenAI) -> None:
    out = await oai.responses.create(model="a", input="hi", instructions="be brief")
    assert out.output_text
    assert out.status == "completed"


async def test_model_list(oai: openai.AsyncOpenAI) -> None:
    models = await oai.models.list()
    assert sorted(m.id for m in models.data) == ["a", "b", "vision"]
    one = await oai.models.retrieve("a")
    assert one.id == "a"


async def test_unknown_model_is_a_404_in_openai_shape(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await oai.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.code == "model_not_found"


async def test_image_input_needs_the_image_modality(oai: openai.AsyncOpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    content = [{"type": "text", "text": "what is this"}, image]
    with pytest.raises(openai.BadRequestError) as info:
        await oai.chat.completions.create(
            model="a",
            messages=[{"role": "user", "content": content}],  # type: ignore[misc,list-item]
        )
    assert info.value.code == "modality_unsupported"
    ok = await oai.chat.completions.create(
        model="vision",
        messages=[{"role": "user", "content": content}],  # type: ignore[misc,list-item]
    )
    assert ok.choices


async def test_completions_embeddings_images(oai: openai.AsyncOpenAI) -> None:
    c = oai
    comp = await c.completions.create(model="a", prompt="once upon")
    assert comp.choices[0].text
    emb = await c.embeddings.create(model="a", input=["x", "y"])
    assert len(emb.data) == 2
    img = await c.images.generate(model="a", prompt="a cat", size="256x256")
    assert img.data is not None
    assert img.data[0].b64_json
