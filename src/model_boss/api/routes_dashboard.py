"""The dashboard: one static page (and its script and style) over the JSON status routes.

The page holds no data of its own: its script polls ``/health``, ``/api/v1/gpu/status``,
``/v1/admin/models``, ``/v1/queue`` and ``/v1/requestors`` with the API key the user gives
it (kept in the browser's localStorage), and renders every value as text.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from starlette.responses import RedirectResponse, Response

from model_boss.api.errors import APIError

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    return (resources.files("model_boss.api") / "dashboard" / name).read_bytes()


def _serve(name: str) -> Response:
    return Response(_asset(name), media_type=_ASSETS[name], headers=_HEADERS)


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/dashboard", status_code=307)


@router.api_route("/dashboard", methods=["GET", "HEAD"])
async def dashboard() -> Response:
    return _serve("index.html")


@router.get("/dashboard/{name}")
async def dashboard_asset(name: str) -> Response:
    if name not in _ASSETS or name == "index.html":
        raise APIError(404, f"no dashboard file {name!r}", code="not_found")
    return _serve(name)
