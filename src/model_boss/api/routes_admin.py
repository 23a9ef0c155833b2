"""Admin routes (llm-pool's surface). With keys configured they need an admin key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from model_boss.api._state import admin_service, json_response
from model_boss.api.protocol import AdminLoadRequest

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin")


@router.get("/models", summary="Every configured model with state, replicas, queue, footprint")
async def models(request: Request) -> Response:
    return json_response({"models": admin_service(request).models()})


@router.post("/models/{model_id:path}/load", summary="Load a model (optional live overrides)")
async def load(request: Request, model_id: str, req: AdminLoadRequest | None = None) -> Response:
    admin = admin_service(request)
    req = req or AdminLoadRequest()
    result = await admin.load(
        model_id,
        replicas=req.replicas,
        overrides=req.overrides,
        wait=req.wait,
        timeout_s=req.timeout_s,
    )
    return json_response(result)


@router.post("/models/{model_id:path}/unload", summary="Unload a model once its requests finish")
async def unload(request: Request, model_id: str) -> Response:
    return json_response(admin_service(request).unload(model_id))


@router.get("/gpu-memory", summary="Pool memory and per-model memory estimates")
async def gpu_memory(request: Request) -> Response:
    return json_response(await admin_service(request).memory())
