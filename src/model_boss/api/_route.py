"""The OpenAI routes' route class: FastAPI's request handling, minus its general machinery
on the one path every inference request takes."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["JSONBodyRoute"]


class JSONBodyRoute(APIRoute):
    """An APIRoute for endpoints ``async def f(request: Request, req: Model) -> Response``.

    A request with ``Content-Type: application/json`` whose body parses and passes the
    route's own ``body_field`` validation (the very check FastAPI runs) goes straight to
    the endpoint, skipping FastAPI's general dependency solving and per-request telemetry
    bookkeeping (~15% of the coordinator's CPU per proxied chat request). Every other
    request (another or no content type, an empty or malformed body, a validation error,
    FastAPI's OpenTelemetry active) is handed to FastAPI's own handler, so every error
    answer and every instrumented request is exactly FastAPI's. Endpoints of any other
    shape get FastAPI's handler only.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        general = super().get_route_handler()
        d = self.dependant
        field = self.body_field
        if (
            field is None
            or d.request_param_name is None
            or len(d.body_params) != 1
            or d.path_params
            or d.query_params
            or d.header_params
            or d.cookie_params
            or d.dependencies
            or d.response_param_name is not None
            or d.background_tasks_param_name is not None
            or not inspect.iscoroutinefunction(self.endpoint)
        ):
            return general
        endpoint = self.endpoint
        request_name = d.request_param_name
        body_name = d.body_params[0].name

        async def handler(request: Request) -> Response:
            if (
                request.headers.get("content-type") != "application/json"
                or request.scope.get("fastapi.telemetry") is not None
            ):
                return await general(request)
            try:
                if not await request.body():
                    return await general(request)  # FastAPI's missing-body answer
                data = await request.json()  # kept by Starlette: the endpoint reads it too
            except Exception:  # unreadable (too large) or not JSON: FastAPI answers it
                return await general(request)
            try:
                value, errors = field.validate(data, {}, loc=("body",))
            except Exception:  # FastAPI's internals moved: its own handler still works
                return await general(request)
            if errors:
                return await general(request)  # FastAPI's validation answer
            response = await endpoint(**{request_name: request, body_name: value})
            if not isinstance(response, Response):
                raise TypeError(f"{self.path}: {endpoint.__name__} must return a Response")
            return response

        return handler
