"""Redis key names, all in one place. The prefix defaults to ``mb:``."""

from __future__ import annotations

import os

__all__ = ["DEFAULT_PREFIX", "RedisKeys", "default_prefix"]

DEFAULT_PREFIX = "mb:"


def default_prefix() -> str:
    return os.environ.get("MODEL_BOSS_REDIS_PREFIX", DEFAULT_PREFIX)


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pools = f"{prefix}pools"  # SET of pool names

    def pool(self, pool: str) -> list[str]:
        """The four keys of one pool, in the order the Lua scripts expect."""
        tag = "{" + pool + "}"
        return [
            f"{self.prefix}pool:{tag}",
            f"{self.prefix}leases:{tag}",
            f"{self.prefix}expiry:{tag}",
            f"{self.prefix}waiters:{tag}",
        ]
