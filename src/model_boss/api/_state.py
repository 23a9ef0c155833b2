"""What every router needs from the app: the services (after the key check) and JSON."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from model_boss.api.admin import AdminService
from model_boss.api.service import InferenceService

__all__ = ["admin_service", "inference_service", "json_response"]


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def inference_service(request: Request) -> InferenceService:
    """The inference service, once the caller's API key (if keys are set) is checked."""
    request.app.state.keys.user(request)
    service: InferenceService = request.app.state.service
    return service


def admin_service(request: Request) -> AdminService:
    """The admin service, once the caller's admin key (if keys are set) is checked."""
    request.app.state.keys.admin(request)
    admin: AdminService = request.app.state.admin
    return admin
