"""Wire models of the HTTP API (OpenAI shapes plus the ``x_*`` queue fields).

Request models validate what the coordinator itself relies on and let every other
field through (``extra="allow"``); what of it reaches a backend, and within which ranges,
is decided per backend kind by ``_forwarded.check_forwarded``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

__all__ = [
    "X_FIELDS",
    "AdminLoadRequest",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "EmbeddingRequest",
    "ImageGenerationRequest",
    "LegacyDiffusionRequest",
    "ResponsesRequest",
    "StreamOptions",
]

X_FIELDS = ("x_client_id", "x_priority", "x_stay_warm", "x_cooldown")

NonNegative = Annotated[float, Field(ge=0, le=86_400 * 7)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class QueueFields(_Open):
    """Queue extension fields, stripped before the request reaches a backend."""

    x_client_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    x_priority: str | Annotated[int, Field(ge=1, le=1000)] | None = None
    x_stay_warm: NonNegative | None = None
    x_cooldown: NonNegative | None = None
    allow_remote: StrictBool = False

    @field_validator("x_priority", mode="before")
    @classmethod
    def _priority_is_no_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # true would otherwise be 1: urgent
            raise ValueError("expected a priority name or number, not true or false")
        return value


class TextPart(_Open):
    type: Literal["text", "input_text"]
    text: str


class ImageURL(_Open):
    url: str
    detail: str | None = None


class ImagePart(_Open):
    type: Literal["image_url", "input_image"]
    image_url: ImageURL | str | None = None


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Open):
    include_usage: StrictBool = False


class _Sampling(QueueFields):
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None


class ChatCompletionRequest(_Sampling):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=10_000)]


class CompletionRequest(_Sampling):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]


class EmbeddingRequest(QueueFields):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: (
        str
        | Annotated[list[str], Field(min_length=1, max_length=2048)]
        | Annotated[list[int], Field(min_length=1)]
        | Annotated[list[list[int]], Field(min_length=1)]
    )
    encoding_format: Literal["float", "base64"] | None = None


class ImageGenerationRequest(QueueFields):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    prompt: Annotated[str, Field(min_length=1, max_length=32_000)]
    n: Annotated[int, Field(ge=1, le=4)] = 1
    size: Annotated[str, Field(pattern=r"^[1-9][0-9]{1,3}x[1-9][0-9]{1,3}$")] | None = None
    width: Annotated[int, Field(ge=8, le=4096)] | None = None
    height: Annotated[int, Field(ge=8, le=4096)] | None = None
    response_format: Literal["b64_json", "url"] | None = None
    num_inference_steps: Annotated[int, Field(ge=1, le=500)] | None = None
    seed: int | None = None


class LegacyDiffusionRequest(ImageGenerationRequest):
    """Model Boss's ``/api/v1/diffusion/generate`` (same fields as image generations)."""


class Decoding(_Open):
    """llm-pool's ``decoding`` table (mapped onto OpenAI sampling fields)."""

    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0)] | None = None
    stop: list[str] | None = None


class InputMessage(_Open):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    type: Literal["message"] | None = None


class ResponsesRequest(QueueFields):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: str | Annotated[list[InputMessage | ContentPart], Field(min_length=1)] | None = None
    messages: Annotated[list[InputMessage], Field(min_length=1)] | None = None
    instructions: str | None = None
    stream: StrictBool = False
    max_output_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    decoding: Decoding | None = None
    thinking: Literal["default", "enabled", "disabled"] | None = None


class AdminLoadRequest(BaseModel):
    """``POST /v1/admin/models/{id}/load``: live overrides, limited per backend kind."""

    model_config = ConfigDict(extra="forbid")

    replicas: Annotated[int, Field(ge=1, le=64)] | None = None
    overrides: dict[str, Any] | None = None
    wait: StrictBool = True
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 600.0
