"""The Responses API over chat backends: request translation, the response object, and
the streamed event sequence (``response.created`` ... ``response.completed``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from model_boss.api.errors import APIError
from model_boss.api.protocol import ResponsesRequest
from model_boss.api.service import StreamState

__all__ = ["ResponseStream", "build_response", "chat_body_for"]


def _parts(content: Any) -> Any:
    """Responses content items -> chat content items."""
    if isinstance(content, str):
        return content
    out: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind in ("text", "input_text"):
            out.append({"type": "text", "text": part.get("text", "")})
        elif kind in ("image_url", "input_image"):
            url = part.get("image_url")
            if isinstance(url, dict):
                url = url.get("url")
            out.append({"type": "image_url", "image_url": {"url": url}})
    return out


def chat_body_for(req: ResponsesRequest, raw: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body that answers a Responses request."""
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    source = raw.get("messages") if req.messages is not None else raw.get("input")
    if source is None:
        raise APIError(400, "provide either input or messages", code="invalid_request")
    if isinstance(source, str):
        messages.append({"role": "user", "content": source})
    elif all(isinstance(x, dict) and "role" in x for x in source):
        for item in source:
            messages.append({"role": item["role"], "content": _parts(item["content"])})
    else:  # a bare list of content items is one user message
        messages.append({"role": "user", "content": _parts(source)})
    if messages[-1]["role"] != "user":
        raise APIError(400, "the last message must be a user message", code="invalid_request")
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    decoding = req.decoding.model_dump(exclude_none=True) if req.decoding else {}
    for key in ("temperature", "top_p", "top_k", "repetition_penalty", "stop"):
        if key in decoding:
            body["repeat_penalty" if key == "repetition_penalty" else key] = decoding[key]
    max_tokens = req.max_output_tokens or decoding.get("max_tokens")
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.thinking in ("enabled", "disabled"):
        # llama-server and vLLM pass these to the chat template (Qwen3, Gemma 4, ...)
        body["chat_template_kwargs"] = {"enable_thinking": req.thinking == "enabled"}
    return body


def _usage(chat_usage: Any) -> dict[str, Any] | None:
    if not isinstance(chat_usage, dict):
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    output = int(chat_usage.get("completion_tokens") or 0)
    return {
        "input_tokens": prompt,
        "output_tokens": output,
        "total_tokens": prompt + output,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _skeleton(rid: str, model: str, created: int, status: str) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": [],
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "usage": None,
    }


def _message(mid: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status else []
    return {
        "type": "message",
        "id": mid,
        "status": status or "in_progress",
        "role": "assistant",
        "content": content,
    }


def build_response(model: str, chat: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """A completed Response object from a chat completion."""
    choices = chat.get("choices") or [{}]
    text = str((choices[0].get("message") or {}).get("content") or "")
    rid, mid = f"resp_{secrets.token_hex(12)}", f"msg_{secrets.token_hex(12)}"
    response = _skeleton(rid, model, int(time.time()), "completed")
    response["output"] = [_message(mid, text, "completed")]
    response["output_text"] = text
    response["usage"] = _usage(chat.get("usage"))
    response["metrics"] = metrics
    return response


class ResponseStream:
    """Turns a chat-completions SSE stream into the Responses event sequence:

    response.created, response.in_progress, response.output_item.added,
    response.content_part.added, response.output_text.delta (one per chunk),
    response.output_text.done, response.content_part.done, response.output_item.done,
    response.metrics (model-boss's timing metrics), response.completed.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.rid = f"resp_{secrets.token_hex(12)}"
        self.mid = f"msg_{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.seq = 0

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **payload}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    async def events(
        self, chunks: AsyncIterator[bytes], state: StreamState
    ) -> AsyncIterator[bytes]:
        progress = _skeleton(self.rid, self.model, self.created, "in_progress")
        yield self._event("response.created", {"response": progress})
        yield self._event("response.in_progress", {"response": progress})
        item = _message(self.mid, "", "")
        yield self._event("response.output_item.added", {"output_index": 0, "item": item})
        where = {"item_id": self.mid, "output_index": 0, "content_index": 0}
        empty = {"type": "output_text", "text": "", "annotations": []}
        yield self._event("response.content_part.added", {**where, "part": empty})
        pieces: list[str] = []
        async for chunk in chunks:
            for line in chunk.split(b"\n"):
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                try:
                    data = orjson.loads(line[6:])
                except orjson.JSONDecodeError:
                    continue
                state.usage = data.get("usage") or state.usage
                for choice in data.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        pieces.append(delta)
                        yield self._event(
                            "response.output_text.delta", {**where, "delta": delta, "logprobs": []}
                        )
        text = "".join(pieces)
        part = {"type": "output_text", "text": text, "annotations": []}
        yield self._event("response.output_text.done", {**where, "text": text, "logprobs": []})
        yield self._event("response.content_part.done", {**where, "part": part})
        done_item = _message(self.mid, text, "completed")
        yield self._event("response.output_item.done", {"output_index": 0, "item": done_item})
        final_metrics = state.metrics()
        yield self._event("response.metrics", {"response_id": self.rid, "metrics": final_metrics})
        response = _skeleton(self.rid, self.model, self.created, "completed")
        response["output"] = [done_item]
        response["output_text"] = text
        response["usage"] = _usage(state.usage)
        response["metrics"] = final_metrics
        yield self._event("response.completed", {"response": response})
