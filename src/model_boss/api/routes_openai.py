"""OpenAI-compatible routes. They translate HTTP only; the service does the work."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from model_boss.api._route import JSONBodyRoute
from model_boss.api._state import inference_service, json_response
from model_boss.api.errors import APIError
from model_boss.api.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageGenerationRequest,
    LegacyDiffusionRequest,
    ResponsesRequest,
)
from model_boss.api.responses import ResponseStream, build_response, chat_body_for
from model_boss.api.service import InferenceService

__all__ = ["router"]

router = APIRouter(route_class=JSONBodyRoute)


async def _raw(request: Request) -> dict[str, Any]:
    data = await request.json()  # FastAPI parsed it to validate it; Starlette keeps it
    assert isinstance(data, dict)  # validated by FastAPI already
    return data


@router.post("/v1/chat/completions", summary="Chat completion (OpenAI)")
async def chat_completions(request: Request, req: ChatCompletionRequest) -> Response:
    service = inference_service(request)
    raw = await _raw(request)
    ctx = service.context(request, req, req.model, images=service.check_images(raw))
    body = service.forward_body(raw, ctx)
    if req.stream:
        return await service.open_stream(request, ctx, lambda b: b.chat_stream(body))
    result = await service.call(request, ctx, lambda b: b.chat(body))
    return json_response({**result.body, "metrics": result.metrics})


@router.post("/v1/completions", summary="Text completion (OpenAI)")
async def completions(request: Request, req: CompletionRequest) -> Response:
    service = inference_service(request)
    ctx = service.context(request, req, req.model)
    body = service.forward_body(await _raw(request), ctx)
    if req.stream:
        return await service.open_stream(request, ctx, lambda b: b.completions_stream(body))
    result = await service.call(request, ctx, lambda b: b.completions(body))
    return json_response({**result.body, "metrics": result.metrics})


@router.post("/v1/embeddings", summary="Embeddings (OpenAI)")
async def embeddings(request: Request, req: EmbeddingRequest) -> Response:
    service = inference_service(request)
    ctx = service.context(request, req, req.model)
    body = service.forward_body(await _raw(request), ctx)
    result = await service.call(request, ctx, lambda b: b.embeddings(body))
    return json_response({**result.body, "metrics": result.metrics})


def _image_body(req: ImageGenerationRequest, raw: dict[str, Any]) -> dict[str, Any]:
    body = InferenceService.strip_queue_fields(raw)
    if req.size is None and (req.width or req.height):
        body["size"] = f"{req.width or req.height}x{req.height or req.width}"
    body.pop("width", None)
    body.pop("height", None)
    return body


@router.post("/v1/images/generations", summary="Image generation (OpenAI)")
async def images(request: Request, req: ImageGenerationRequest) -> Response:
    service = inference_service(request)
    ctx = service.context(request, req, req.model)
    body = _image_body(req, await _raw(request))
    result = await service.call(request, ctx, lambda b: b.images(body))
    return json_response({**result.body, "metrics": result.metrics})


@router.post("/api/v1/diffusion/generate", summary="Image generation (Model Boss legacy)")
async def legacy_diffusion(request: Request, req: LegacyDiffusionRequest) -> Response:
    return await images(request, req)


@router.post("/v1/responses", summary="Responses API (JSON or SSE)")
async def responses(request: Request, req: ResponsesRequest) -> Response:
    service = inference_service(request)
    raw = await _raw(request)
    ctx = service.context(request, req, req.model, images=service.check_images(raw))
    body = service.forward_body(chat_body_for(req, raw), ctx)
    if req.stream:
        stream = ResponseStream(req.model)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return await service.open_stream(
            request, ctx, lambda b: b.chat_stream(body), wrap=stream.events
        )
    result = await service.call(request, ctx, lambda b: b.chat(body))
    return json_response(build_response(req.model, result.body, result.metrics))


def _model_card(service: InferenceService, model_id: str) -> dict[str, Any]:
    model = service.engine.models[model_id]
    return {
        "id": model_id,
        "object": "model",
        "created": int(service.started_at),
        "owned_by": "model-boss",
        "category": model.profile.category,
        "backend": model.backend,
        "state": service.engine.model_state(model_id),
        "modalities": sorted(model.modalities),
    }


@router.get("/v1/models", summary="List models (OpenAI)")
async def list_models(request: Request) -> Response:
    service = inference_service(request)
    data = [
        _model_card(service, mid) for mid in service.engine.models if service.engine.serves(mid)
    ]
    return json_response({"object": "list", "data": data})


@router.get("/v1/models/{model_id:path}", summary="One model (OpenAI)")
async def get_model(request: Request, model_id: str) -> Response:
    service = inference_service(request)
    model = service.engine.models.get(model_id)
    if model is None or not service.engine.serves(model_id):
        raise APIError(404, f"the model {model_id!r} does not exist", code="model_not_found")
    return json_response(_model_card(service, model_id))
