"""Errors in the OpenAI error shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

__all__ = [
    "APIError",
    "document_errors",
    "error_body",
    "error_response",
    "install_error_handlers",
    "public",
]

# Where a backend listens (``http://127.0.0.1:40123/v1``, ``127.0.0.1:40123``, aiohttp's
# ``('127.0.0.1', 40123)``) is the coordinator's business, not its clients'.
_ADDRESS = re.compile(
    r"\bhttps?://[^\s'\"<>]+"
    r"|\(\s*'[^']*'\s*,\s*\d+\s*\)"
    r"|\[[0-9a-fA-F:]+\](?::\d+)?"
    r"|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?"
    r"|\blocalhost(?::\d+)?"
)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
    507: "insufficient_storage_error",
}


class APIError(Exception):
    """Raise anywhere under a route to answer with this status and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s


def public(message: str) -> str:
    """``message`` without the addresses of backends, for an answer to a client."""
    return _ADDRESS.sub("<backend>", message)


def error_body(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(
                status, "server_error" if status >= 500 else "invalid_request_error"
            ),
            "param": param,
            "code": code,
        }
    }


def error_response(exc: APIError) -> Response:
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return Response(
        orjson.dumps(error_body(exc.status, exc.message, exc.code, exc.param)),
        status_code=exc.status,
        media_type="application/json",
        headers=headers,
    )


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    where = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "missing":
        return f"missing required field: {where}", where
    return (f"{where}: {msg}" if where else msg), where


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        return error_response(APIError(400, message, code="invalid_request", param=param))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        response = error_response(APIError(exc.status_code, str(exc.detail), code=code))
        response.headers.update(exc.headers or {})  # a 405's Allow
        return response

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        import logging

        logging.getLogger("model_boss.api").exception("unhandled error on %s", request.url.path)
        return error_response(APIError(500, "internal error", code="internal_error"))

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def document_errors(app: FastAPI) -> None:
    """Make the OpenAPI schema say what the app answers: a request that fails validation
    gets 400 in the OpenAI error shape (FastAPI's schema would say 422)."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = make()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses["400"] = {
                        "description": "Invalid request",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                            }
                        },
                    }
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["ErrorResponse"] = _ERROR_SCHEMA
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
