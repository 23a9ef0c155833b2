"""The model-boss SDK: talk to a coordinator over HTTP.

It imports no server code, so that any program can use it::

    from model_boss.client import InferenceClient

    async with InferenceClient() as client:
        reply = await client.chat("ministral-3b-instruct", [{"role": "user", "content": "Hi"}])

:class:`InferenceClient` reaches every model; :class:`ModelBoss` is bound to one.
``SyncInferenceClient`` and ``SyncModelBoss`` are their blocking twins. The errors form
one tree under :class:`ClientError` (see ``model_boss.client._errors``).
"""

from __future__ import annotations

from model_boss.client._async import InferenceClient
from model_boss.client._boss import ModelBoss, SyncModelBoss
from model_boss.client._calls import X_FIELDS
from model_boss.client._errors import (
    AuthenticationFailed,
    ClientError,
    CoordinatorError,
    CoordinatorTimeout,
    CoordinatorUnavailable,
    InvalidRequest,
    ModelNotFound,
    ModelUnavailable,
    QueueFull,
    UnexpectedResponse,
)
from model_boss.client._settings import DEFAULT_URL, resolve_api_key, resolve_base_url
from model_boss.client._sync import SyncInferenceClient

__all__ = [
    "DEFAULT_URL",
    "X_FIELDS",
    "AuthenticationFailed",
    "ClientError",
    "CoordinatorError",
    "CoordinatorTimeout",
    "CoordinatorUnavailable",
    "InferenceClient",
    "InvalidRequest",
    "ModelBoss",
    "ModelNotFound",
    "ModelUnavailable",
    "QueueFull",
    "SyncInferenceClient",
    "SyncModelBoss",
    "UnexpectedResponse",
    "resolve_api_key",
    "resolve_base_url",
]
