"""Optional bearer API keys. With no keys configured, everything is open."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.requests import Request

from model_boss.api.errors import APIError

__all__ = ["KeyCheck"]


class KeyCheck:
    """``api_keys`` may call inference and status endpoints; ``admin_keys`` also the admin
    endpoints. With API keys set, inference and status need one (or an admin key); with
    any key set, admin endpoints need an admin key. ``/health`` and ``/metrics`` are open."""

    def __init__(self, api_keys: Sequence[str] = (), admin_keys: Sequence[str] = ()) -> None:
        self.api_keys = tuple(k for k in api_keys if k)
        self.admin_keys = tuple(k for k in admin_keys if k)

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys or self.admin_keys)

    @staticmethod
    def _bearer(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    @staticmethod
    def _matches(token: str, keys: Sequence[str]) -> bool:
        return any(hmac.compare_digest(token.encode(), key.encode()) for key in keys)

    def user(self, request: Request) -> None:
        if not self.api_keys:  # only admin keys set: inference and status stay open
            return
        token = self._bearer(request)
        if token is None:
            raise APIError(401, "missing API key (Authorization: Bearer ...)", code="missing_key")
        if not self._matches(token, self.api_keys + self.admin_keys):
            raise APIError(401, "invalid API key", code="invalid_key")

    def is_admin(self, request: Request) -> bool:
        """Whether the caller holds an admin key (everyone does while no key is set)."""
        if not self.enabled:
            return True
        token = self._bearer(request)
        return token is not None and self._matches(token, self.admin_keys)

    def admin(self, request: Request) -> None:
        if not self.enabled:
            return
        token = self._bearer(request)
        if token is None:
            raise APIError(401, "missing admin key (Authorization: Bearer ...)", code="missing_key")
        if not self._matches(token, self.admin_keys):
            raise APIError(403, "this endpoint needs an admin key", code="admin_required")
