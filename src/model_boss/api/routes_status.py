"""Status routes: queue, requestors, pool, GPU memory, health, Prometheus metrics."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from model_boss._version import __version__
from model_boss.api._state import inference_service, json_response

__all__ = ["router"]

router = APIRouter()


@router.get("/health", summary="Liveness and a one-line summary")
async def health(request: Request) -> Response:
    engine = request.app.state.service.engine
    return json_response(
        {
            "status": "ok",
            "version": __version__,
            "models": len(engine.models),
            "queue_depth": engine.scheduler.queue_length,
            "running": engine.scheduler.running,
        }
    )


@router.get("/v1/queue", summary="Waiting requests with position, priority, client and age")
async def queue(request: Request) -> Response:
    engine = inference_service(request).engine
    waiting = engine.queue_snapshot()
    return json_response(
        {"depth": len(waiting), "waiting": waiting, "running": engine.running_snapshot()}
    )


@router.get("/v1/requestors", summary="Client profiles and their statistics")
async def requestors(request: Request) -> Response:
    service = inference_service(request)
    clients = [
        {"client_id": name, **dataclasses.asdict(stats)}
        for name, stats in sorted(service.clients.items())
    ]
    return json_response({"clients": clients})


@router.get("/v1/pool/status", summary="Slots of the model pool")
async def pool_status(request: Request) -> Response:
    engine = inference_service(request).engine
    pools = [
        {"pool": p.pool_id, "capacity_mb": p.capacity_mb, "promised_mb": p.promised_mb}
        for p in engine.scheduler.pool.pools.values()
    ]
    slots = engine.slots_snapshot()
    if not request.app.state.keys.is_admin(request):
        slots = [_without_port(slot) for slot in slots]
    return json_response(
        {
            "pools": pools,
            "slots": slots,
            "stopped_for_errors": list(engine.stopped_for_errors),
        }
    )


def _without_port(slot: dict[str, Any]) -> dict[str, Any]:
    """A slot as a non-admin caller sees it: no backend port (the child is only for us)."""
    backend = slot.get("backend")
    if not backend or "port" not in backend:
        return slot
    return {**slot, "backend": {k: v for k, v in backend.items() if k != "port"}}


@router.get("/api/v1/gpu/status", summary="Memory pools as the lease ledger sees them")
async def gpu_status(request: Request) -> Response:
    engine = inference_service(request).engine
    pools = [p.to_dict() for p in await engine.ledger.status()]
    gpus = [p for p in pools if ":gpu" in p["pool"]]
    return json_response({"gpus": gpus, "pools": pools, "ledger": engine.ledger.url})


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    body = await request.app.state.metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
