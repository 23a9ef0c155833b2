"""HTTP: the OpenAI-compatible API, status and admin endpoints, metrics.

Routers only translate HTTP; the logic lives in ``service.py`` and ``admin.py``.
"""

from __future__ import annotations

from model_boss.api.app import create_app

__all__ = ["create_app"]
