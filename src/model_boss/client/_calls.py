"""What each SDK method sends: method, path and JSON body. No I/O, so the async and the
sync client share it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

__all__ = ["X_FIELDS", "Call", "Calls", "EmbeddingInput", "listed"]

#: Queue extension fields: the coordinator reads and strips them before the backend.
X_FIELDS = ("x_client_id", "x_priority", "x_stay_warm", "x_cooldown")
#: Text, texts, token ids, or lists of token ids.
EmbeddingInput = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
#: The coordinator's own default for how long an admin load waits.
_LOAD_WAIT_S = 600.0
#: Read-timeout slack over the coordinator's own wait.
_SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None
    #: A read timeout this call needs at least (an admin load that waits).
    read_timeout_s: float | None = None


def _model_path(model: str) -> str:
    return quote(model, safe="")


class Calls:
    """Builds the :class:`Call` of each endpoint; ``client_id`` is the default ``x_client_id``."""

    def __init__(self, client_id: str | None = None) -> None:
        self.client_id = client_id

    def body(self, fields: Mapping[str, Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``fields`` then ``kwargs`` (OpenAI fields and ``x_*``), leaving out None values."""
        unknown = sorted(k for k in kwargs if k.startswith("x_") and k not in X_FIELDS)
        if unknown:
            raise TypeError(
                f"unknown queue field(s) {', '.join(unknown)}; known: {', '.join(X_FIELDS)}"
            )
        if "stream" in kwargs:
            raise TypeError("pass no 'stream': call the *_stream method to stream")
        out = {k: v for k, v in fields.items() if v is not None}
        out.update((k, v) for k, v in kwargs.items() if v is not None)
        if self.client_id and "x_client_id" not in out:
            out["x_client_id"] = self.client_id
        return out

    def _post(
        self, path: str, fields: Mapping[str, Any], kwargs: Mapping[str, Any], stream: bool
    ) -> Call:
        body = self.body(fields, kwargs)
        if stream:
            body["stream"] = True
        return Call("POST", path, body)

    # -- inference --------------------------------------------------------------------------

    def chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        kwargs: Mapping[str, Any],
        stream: bool = False,
    ) -> Call:
        fields = {"model": model, "messages": [dict(m) for m in messages]}
        return self._post("/v1/chat/completions", fields, kwargs, stream)

    def completions(
        self, model: str, prompt: str, kwargs: Mapping[str, Any], stream: bool = False
    ) -> Call:
        return self._post("/v1/completions", {"model": model, "prompt": prompt}, kwargs, stream)

    def embeddings(self, model: str, input: Any, kwargs: Mapping[str, Any]) -> Call:
        return self._post("/v1/embeddings", {"model": model, "input": input}, kwargs, False)

    def images(self, model: str, prompt: str, size: str | None, kwargs: Mapping[str, Any]) -> Call:
        fields = {"model": model, "prompt": prompt, "size": size}
        return self._post("/v1/images/generations", fields, kwargs, False)

    def responses(
        self,
        model: str,
        input: Any,
        instructions: str | None,
        kwargs: Mapping[str, Any],
        stream: bool = False,
    ) -> Call:
        fields = {"model": model, "input": input, "instructions": instructions}
        return self._post("/v1/responses", fields, kwargs, stream)

    # -- status -----------------------------------------------------------------------------

    @staticmethod
    def get(path: str) -> Call:
        return Call("GET", path)

    @staticmethod
    def model(model: str) -> Call:
        return Call("GET", f"/v1/models/{_model_path(model)}")

    # -- admin ------------------------------------------------------------------------------

    @staticmethod
    def load(
        model: str,
        replicas: int | None,
        overrides: Mapping[str, Any] | None,
        wait: bool,
        timeout_s: float | None,
    ) -> Call:
        body: dict[str, Any] = {"wait": wait}
        if replicas is not None:
            body["replicas"] = replicas
        if overrides:
            body["overrides"] = dict(overrides)
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        read_s = (timeout_s or _LOAD_WAIT_S) + _SLACK_S if wait else None
        return Call("POST", f"/v1/admin/models/{_model_path(model)}/load", body, read_s)

    @staticmethod
    def unload(model: str) -> Call:
        return Call("POST", f"/v1/admin/models/{_model_path(model)}/unload")


def listed(value: Any) -> Any:
    """Tuples and other sequences as JSON lists (mappings as dicts); str and None unchanged."""
    if value is None or isinstance(value, (str, list)):
        return value
    return [dict(v) if isinstance(v, Mapping) else v for v in value]
