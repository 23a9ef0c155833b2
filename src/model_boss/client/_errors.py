"""Errors of the SDK, and how HTTP answers and transport failures map onto them.

Every error the client raises on purpose derives from :class:`ClientError`::

    ModelBossError
    └── ClientError                   base of the SDK's errors
        ├── CoordinatorUnavailable    (also ConnectionError) no connection, or it broke
        ├── CoordinatorTimeout        (also TimeoutError) no answer within the timeout
        ├── UnexpectedResponse        the answer is not what the API promises (not JSON...)
        └── CoordinatorError          the coordinator answered with an error status:
            │                         ``.status``, ``.code``, ``.message``, ``.type``, ``.param``
            ├── InvalidRequest        400, 413, 422 (also ValueError)
            ├── AuthenticationFailed  401 missing or wrong key, 403 not an admin key
            ├── ModelNotFound         404 for a model (also LookupError)
            ├── QueueFull             429; ``.retry_after`` seconds (from Retry-After)
            └── ModelUnavailable      503, 507: cannot be loaded now, or does not fit
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from model_boss.errors import ModelBossError

__all__ = [
    "AuthenticationFailed",
    "ClientError",
    "CoordinatorError",
    "CoordinatorTimeout",
    "CoordinatorUnavailable",
    "InvalidRequest",
    "ModelNotFound",
    "ModelUnavailable",
    "QueueFull",
    "UnexpectedResponse",
    "error_from_answer",
    "error_from_transport",
    "json_answer",
    "list_field",
]


class ClientError(ModelBossError):
    """Base of the errors the SDK raises."""


class CoordinatorUnavailable(ClientError, ConnectionError):
    """The coordinator cannot be reached, or the connection broke mid-answer."""


class CoordinatorTimeout(ClientError, TimeoutError):
    """The coordinator did not answer within the client's timeout."""


class UnexpectedResponse(ClientError):
    """The coordinator's answer does not have the shape its API promises."""


class CoordinatorError(ClientError):
    """The coordinator answered with an error (the OpenAI shape ``{"error": {...}}``)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code or 'error'}: {message}")
        self.status = status
        self.message = message
        self.code = code
        self.type = type
        self.param = param
        #: Seconds to wait before trying again, from Retry-After (a full queue, a model
        #: kept out by other programs' memory); None if the answer did not say.
        self.retry_after = retry_after


class InvalidRequest(CoordinatorError, ValueError):
    """The coordinator refused the request as malformed (400, 413, 422)."""


class AuthenticationFailed(CoordinatorError):
    """A key is missing or wrong (401), or the endpoint needs an admin key (403)."""


class ModelNotFound(CoordinatorError, LookupError):
    """No model of that id is configured (404)."""


class QueueFull(CoordinatorError):
    """The queue is full (429); try again after ``retry_after`` seconds (None if unsaid)."""


class ModelUnavailable(CoordinatorError):
    """The model cannot be served now (503; ``retry_after`` when the coordinator said when
    to try again) or does not fit in any pool (507)."""


_BY_STATUS: dict[int, type[CoordinatorError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: AuthenticationFailed,
    404: ModelNotFound,
    413: InvalidRequest,
    422: InvalidRequest,
    503: ModelUnavailable,
    507: ModelUnavailable,
}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare enough not to parse


def error_from_answer(
    status: int, headers: Mapping[str, str], content: bytes, *, url: str = ""
) -> CoordinatorError:
    """The exception for an error answer, read from its OpenAI-shaped body when it has one."""
    message, code, kind, param = content.decode(errors="replace").strip(), None, None, None
    try:
        data: Any = json.loads(content)
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        code = _str_or_none(error.get("code"))
        kind = _str_or_none(error.get("type"))
        param = _str_or_none(error.get("param"))
    elif isinstance(error, str):  # some servers answer {"error": "text"}
        message = error
    if not message:
        message = f"HTTP {status}" + (f" from {url}" if url else "")
    cls = QueueFull if status == 429 else _BY_STATUS.get(status, CoordinatorError)
    if cls is ModelNotFound and code == "not_found":  # no such route: not about a model
        cls = CoordinatorError
    retry_after = _retry_after(headers)
    return cls(status, message, code=code, type=kind, param=param, retry_after=retry_after)


def error_from_transport(exc: httpx.TransportError, base_url: str) -> ClientError:
    """The exception for a failure below HTTP: connecting, reading, timing out."""
    if isinstance(exc, httpx.ConnectTimeout):
        return CoordinatorUnavailable(f"cannot connect to the coordinator at {base_url}: timed out")
    if isinstance(exc, httpx.TimeoutException):
        return CoordinatorTimeout(f"the coordinator at {base_url} did not answer in time: {exc}")
    if isinstance(exc, httpx.ConnectError):
        return CoordinatorUnavailable(f"cannot connect to the coordinator at {base_url}: {exc}")
    return CoordinatorUnavailable(f"the connection to the coordinator at {base_url} failed: {exc}")


def json_answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a read answer; raises the mapped error for an error status."""
    if response.is_error:
        raise error_from_answer(
            response.status_code, response.headers, response.content, url=str(response.url)
        )
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UnexpectedResponse(
            f"{response.request.method} {response.url} answered {response.status_code} "
            f"without a JSON object: {response.text[:200]!r}"
        )
    return data


def list_field(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """``data[key]``, which the API promises is a list."""
    items = data.get(key)
    if not isinstance(items, list):
        raise UnexpectedResponse(f"the answer has no {key!r} list: {str(data)[:200]}")
    return items


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
