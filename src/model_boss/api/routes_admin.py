"""Admin routes (llm-pool's surface). With keys configured they need an admin key."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from model_boss.api.admin import AdminService
from model_boss.api.protocol import AdminLoadRequest

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin")


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _admin(request: Request) -> AdminService:
    request.app.state.keys.admin(request)
    admin: AdminService = request.app.state.admin
    return admin


@router.get("/models", summary="Every configured model with state, replicas, queue, footprint")
async def models(request: Request) -> Response:
    return _json({"models": _admin(request).models()})


@router.post("/models/{model_id:path}/load", summary="Load a model (optional live overrides)")
async def load(request: Request, model_id: str, req: AdminLoadRequest | None = None) -> Response:
    admin = _admin(request)
    req = req or AdminLoadRequest()
    result = await admin.load(
        model_id,
        replicas=req.replicas,
        overrides=req.overrides,
        wait=req.wait,
        timeout_s=req.timeout_s,
    )
    return _json(result)


@router.post("/models/{model_id:path}/unload", summary="Unload a model once its requests finish")
async def unload(request: Request, model_id: str) -> Response:
    return _json(_admin(request).unload(model_id))


@router.get("/gpu-memory", summary="Pool memory and per-model memory estimates")
async def gpu_memory(request: Request) -> Response:
    return _json(await _admin(request).memory())
