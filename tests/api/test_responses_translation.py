"""Responses requests become chat requests (pure translation, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from model_boss.api.errors import APIError
from model_boss.api.protocol import ResponsesRequest
from model_boss.api.responses import build_response, chat_body_for


def translate(raw: dict[str, Any]) -> dict[str, Any]:
    return chat_body_for(ResponsesRequest.model_validate(raw), raw)


def test_instructions_and_input_become_system_and_user_messages() -> None:
    body = translate({"model": "m", "input": "hi", "instructions": "be brief"})
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


def test_multi_turn_messages_keep_their_order() -> None:
    turns = [
        {"role": "user", "content": "My favourite colour is teal."},
        {"role": "assistant", "content": "Got it."},
        {"role": "user", "content": "What is it?"},
    ]
    body = translate({"model": "m", "messages": turns})
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_content_items_map_to_chat_items() -> None:
    items = [
        {"type": "input_text", "text": "what is this"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
    ]
    body = translate({"model": "m", "input": items})
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]


def test_decoding_and_thinking_map_onto_sampling_fields() -> None:
    body = translate(
        {
            "model": "m",
            "input": "hi",
            "decoding": {"temperature": 0.1, "max_tokens": 64, "repetition_penalty": 1.1},
            "thinking": "disabled",
        }
    )
    assert body["temperature"] == 0.1
    assert body["max_tokens"] == 64
    assert body["repeat_penalty"] == 1.1
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "chat_template_kwargs" not in translate({"model": "m", "input": "hi"})


def test_the_last_message_must_be_from_the_user() -> None:
    with pytest.raises(APIError, match="last message"):
        translate({"model": "m", "messages": [{"role": "assistant", "content": "x"}]})


def test_a_completed_response_object_carries_text_usage_and_metrics() -> None:
    chat = {
        "choices": [{"message": {"content": "hello"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    out = build_response("m", chat, {"pool_total_wall_ms": 1.0})
    assert out["object"] == "response"
    assert out["status"] == "completed"
    assert out["output_text"] == "hello"
    assert out["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "hello",
        "annotations": [],
    }
    assert out["usage"]["total_tokens"] == 5
    assert out["metrics"] == {"pool_total_wall_ms": 1.0}
