"""Where the coordinator is and how to talk to it: base URL, key, timeouts, headers."""

from __future__ import annotations

import os

import httpx

from model_boss._version import __version__

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_URL",
    "USER_AGENT",
    "Settings",
    "resolve_api_key",
    "resolve_base_url",
]

DEFAULT_URL = "http://localhost:8210"
#: Inference waits in the coordinator's queue and for a model to load: be patient by default.
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
USER_AGENT = f"model-boss-client/{__version__}"


def resolve_base_url(base_url: str | None = None) -> str:
    """``base_url``, else ``$MODEL_BOSS_URL``, else ``$COORDINATOR_URL``, else the default."""
    for candidate in (
        base_url,
        os.environ.get("MODEL_BOSS_URL"),
        os.environ.get("COORDINATOR_URL"),
    ):
        if candidate and candidate.strip():
            return candidate.strip().rstrip("/")
    return DEFAULT_URL


def resolve_api_key(api_key: str | None = None) -> str | None:
    """``api_key``, else ``$MODEL_BOSS_API_KEY``, else none."""
    if api_key:
        return api_key
    return os.environ.get("MODEL_BOSS_API_KEY") or None


class Settings:
    """What a client was built with; shared by the async and the sync client."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        timeout: float | None,
        connect_timeout: float,
        client_id: str | None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self.api_key = resolve_api_key(api_key)
        self.connect_timeout = connect_timeout
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.client_id = client_id

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def timeout_for(self, read_s: float | None) -> httpx.Timeout:
        """The client's timeout, with the read timeout raised to ``read_s`` if that is longer."""
        current = self.timeout.read
        if read_s is None or (current is not None and current >= read_s):
            return self.timeout
        return httpx.Timeout(self.timeout.pool, connect=self.connect_timeout, read=read_s)
