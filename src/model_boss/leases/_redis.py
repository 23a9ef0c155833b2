"""Redis (or Valkey) store: every operation is one Lua script (see ``_lua.py``), sent
over the lean pipelined client in ``_resp.py``."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from model_boss.errors import LeaseLost, StoreUnavailable, UnknownDevice
from model_boss.leases import _lua
from model_boss.leases._constants import RedisKeys, default_prefix
from model_boss.leases._records import (
    GrantResult,
    LeaseRecord,
    LeaseRequest,
    PoolStatus,
    RenewResult,
    WaiterRecord,
)
from model_boss.leases._redis_url import parse_redis_url
from model_boss.leases._resp import Reply, RespConnection, RespError, RespTarget
from model_boss.leases._url import redact_url

__all__ = ["RedisStore"]

CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 5.0
#: Error replies after which the connection is dropped (and the call retried by the boss).
DROP_ON = ("READONLY", "LOADING", "MASTERDOWN", "NOREPLICAS", "BUSY")
SCRIPTS = (
    "GRANT",
    "RENEW",
    "RELEASE",
    "WITHDRAW",
    "PREEMPT",
    "DRAIN",
    "STATUS",
    "REGISTER",
    "FOREIGN",
)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        command_timeout_s: float | None = None,
    ) -> None:
        parsed = parse_redis_url(url)
        self._url = url
        self._keys = RedisKeys(prefix or parsed.prefix or default_prefix())
        self._timeout_s = command_timeout_s or parsed.timeout_s or COMMAND_TIMEOUT_S
        self._connect_timeout_s = parsed.connect_timeout_s or CONNECT_TIMEOUT_S
        self._target = RespTarget.from_parsed(parsed)
        self._conn: RespConnection | None = None
        self._sha = {
            name: hashlib.sha1(getattr(_lua, name).encode()).hexdigest() for name in SCRIPTS
        }

    @property
    def url(self) -> str:
        return redact_url(self._url)

    @property
    def prefix(self) -> str:
        return self._keys.prefix

    async def connect(self) -> None:
        if self._conn is not None:
            return
        conn = RespConnection(
            self._target, timeout_s=self._timeout_s, connect_timeout_s=self._connect_timeout_s
        )
        try:
            await conn.call("PING")
        except (OSError, TimeoutError) as exc:
            await conn.close()
            raise StoreUnavailable(f"cannot reach the Redis ledger {self.url}: {exc}") from exc
        except RespError as exc:
            await conn.close()
            raise StoreUnavailable(f"the Redis ledger {self.url} refused us: {exc}") from exc
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _call(self, *args: object) -> Reply:
        if self._conn is None:
            raise StoreUnavailable("the Redis ledger is not connected (call connect())")
        try:
            return await self._conn.call(*args)
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"the Redis ledger {self.url} did not answer within {self._timeout_s:g} s"
            ) from exc
        except OSError as exc:
            raise StoreUnavailable(f"lost the Redis ledger {self.url}: {exc}") from exc
        except RespError as exc:
            if str(exc).startswith(DROP_ON):
                # A replica (after a failover) or a server still loading its data: drop
                # the connection so the next call finds the master again.
                self._conn.reset()
            raise StoreUnavailable(f"the Redis ledger {self.url} answered: {exc}") from exc

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._call("EVALSHA", self._sha[name], len(keys), *keys, *args)
        except StoreUnavailable as exc:
            if "NOSCRIPT" not in str(exc):
                raise
        await self._call("SCRIPT", "LOAD", getattr(_lua, name))
        return await self._call("EVALSHA", self._sha[name], len(keys), *keys, *args)

    async def register_pool(self, pool: str, capacity_mb: int) -> None:
        keys = [self._keys.pool(pool)[0], self._keys.pools]
        await self._script("REGISTER", keys, [capacity_mb, pool])

    async def set_foreign(self, pool: str, mb: int) -> None:
        if not await self._script("FOREIGN", [self._keys.pool(pool)[0]], [max(0, mb)]):
            raise UnknownDevice(f"unknown pool {pool!r}")

    async def grant(self, req: LeaseRequest) -> GrantResult:
        template = {
            "id": req.lease_id,
            "pool": req.pool,
            "mb": req.mb,
            "priority": req.priority,
            "holder": req.holder,
            "pid": req.pid,
            "host": req.host,
            "model_id": req.model_id,
            "pid_started": req.pid_started,
        }
        out = await self._script(
            "GRANT",
            self._keys.pool(req.pool),
            [
                json.dumps(template),
                req.mb,
                req.priority,
                repr(float(req.ttl_s)),
                req.lease_id,
                1 if req.wait else 0,
                repr(float(req.waiter_ttl_s)),
                repr(float(req.aging_s_per_level)),
            ],
        )
        status = _s(out[0])
        if status == "nopool":
            raise UnknownDevice(f"unknown pool {req.pool!r}")
        if status == "recovering":
            return GrantResult(None, 0, 0, retry_after_s=float(_s(out[1])))
        free, ahead = int(float(_s(out[2]))), int(float(_s(out[3])))
        if status == "granted":
            return GrantResult(LeaseRecord.from_dict(json.loads(out[1])), free, ahead)
        return GrantResult(None, free, ahead)

    async def renew(self, pool: str, lease_id: str, ttl_s: float) -> RenewResult:
        keys = self._keys.pool(pool)[:3]
        out = await self._script("RENEW", keys, [lease_id, repr(float(ttl_s))])
        if _s(out[0]) == "lost":
            raise LeaseLost(f"lease {lease_id} on {pool} expired or was released")
        asker = int(float(_s(out[4]))) if len(out) > 4 else 0
        return RenewResult(float(_s(out[1])), _s(out[2]) == "1", _s(out[3]), asker)

    async def release(self, pool: str, lease_id: str) -> bool:
        out = await self._script("RELEASE", self._keys.pool(pool)[:3], [lease_id])
        return bool(int(out))

    async def withdraw(self, pool: str, waiter_id: str) -> None:
        await self._script("WITHDRAW", [self._keys.pool(pool)[3]], [waiter_id])

    async def request_preemption(
        self, pool: str, need_mb: int, priority: int, reason: str
    ) -> list[str]:
        out = await self._script("PREEMPT", self._keys.pool(pool)[:3], [need_mb, priority, reason])
        ids = [_s(x) for x in out]
        if ids == ["nopool"]:
            raise UnknownDevice(f"unknown pool {pool!r}")
        return ids

    async def _pool_names(self) -> list[str]:
        names = await self._call("SMEMBERS", self._keys.pools)
        assert isinstance(names, list)
        return sorted(_s(n) for n in names)

    async def drain(self, pool: str | None, reason: str) -> int:
        targets = [pool] if pool is not None else await self._pool_names()
        asked = 0
        for name in targets:
            asked += int(await self._script("DRAIN", self._keys.pool(name)[:3], [reason]))
        return asked

    async def pools(self) -> list[PoolStatus]:
        out: list[PoolStatus] = []
        for name in await self._pool_names():
            raw = await self._script("STATUS", self._keys.pool(name), [])
            if _s(raw[0]) == "nopool":
                continue
            leases = sorted(
                (LeaseRecord.from_dict(d) for d in json.loads(_s(raw[3]) or "[]")),
                key=lambda lease: lease.token,
            )
            waiters = sorted(
                (
                    WaiterRecord(
                        id=str(w["id"]),
                        pool=str(w["pool"]),
                        mb=int(w["mb"]),
                        priority=int(w["priority"]),
                        seq=int(w["seq"]),
                        holder=str(w["holder"]),
                        expires_at=float(w["expires_at"]),
                        since=float(w.get("since") or 0.0),
                    )
                    for w in json.loads(_s(raw[4]) or "[]")
                ),
                key=lambda w: (w.priority, w.seq),
            )
            out.append(
                PoolStatus(
                    pool=name,
                    capacity_mb=int(_s(raw[0])),
                    used_mb=int(_s(raw[1])),
                    foreign_mb=int(_s(raw[2])),
                    leases=leases,
                    waiters=waiters,
                )
            )
        return out

    async def now(self) -> float:
        reply = await self._call("TIME")
        assert isinstance(reply, list)
        sec, usec = reply
        return float(_s(sec)) + float(_s(usec)) / 1e6
