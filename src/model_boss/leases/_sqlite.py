"""The embedded default: one SQLite file shared by every process on the host.

Every operation is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken at
the start, so a grant's read-check-write cannot interleave with another process's).
The database runs in WAL mode with ``synchronous=NORMAL``: a commit survives a
process crash; a power loss may lose the last grants, which is harmless for a ledger
of leases that expire anyway.

SQLite's own busy handler sleeps in coarse steps (up to 100 ms) while another
process holds the lock; we retry ourselves with short randomised sleeps instead,
which keeps grant latency low under contention.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import random
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from model_boss.errors import LeaseLost, StoreUnavailable, UnknownDevice
from model_boss.leases._ledger import NO_SEQ, preemption_victims, queue_key, waiters_ahead_mb
from model_boss.leases._records import (
    GrantResult,
    LeaseRecord,
    LeaseRequest,
    PoolStatus,
    RenewResult,
    WaiterRecord,
)
from model_boss.leases._recovery import RECOVERY_S, token_floor

__all__ = ["SQLiteStore"]

log = logging.getLogger("model_boss.leases")

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS pools (
    name TEXT PRIMARY KEY,
    capacity_mb INTEGER NOT NULL,
    foreign_mb INTEGER NOT NULL DEFAULT 0,
    token INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    pool TEXT NOT NULL,
    mb INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    holder TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    model_id TEXT,
    token INTEGER NOT NULL,
    granted_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    preempt INTEGER NOT NULL DEFAULT 0,
    preempt_reason TEXT NOT NULL DEFAULT '',
    preempt_priority INTEGER NOT NULL DEFAULT 0,
    pid_started REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS leases_pool ON leases (pool);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS waiters (
    id TEXT NOT NULL,
    pool TEXT NOT NULL,
    mb INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL,
    since REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (pool, id)
);
"""

LEASE_COLUMNS = (
    "id, pool, mb, priority, holder, pid, host, model_id, token, granted_at, expires_at, "
    "preempt, preempt_reason, preempt_priority, pid_started"
)
LOCK_WAIT_S = 10.0


def _lease(row: tuple[object, ...]) -> LeaseRecord:
    (lid, pool, mb, prio, holder, pid, host, model_id, token, granted, expires, pre, why, asker) = (
        row[:14]
    )
    return LeaseRecord(
        id=str(lid),
        pool=str(pool),
        mb=int(str(mb)),
        priority=int(str(prio)),
        holder=str(holder),
        pid=int(str(pid)),
        host=str(host),
        model_id=None if model_id is None else str(model_id),
        token=int(str(token)),
        granted_at=float(str(granted)),
        expires_at=float(str(expires)),
        preempt=bool(pre),
        preempt_reason=str(why),
        preempt_priority=int(str(asker)),
        pid_started=float(str(row[14])),
    )


def _waiter(row: tuple[object, ...]) -> WaiterRecord:
    wid, pool, mb, prio, seq, holder, expires, since = row
    return WaiterRecord(
        id=str(wid),
        pool=str(pool),
        mb=int(str(mb)),
        priority=int(str(prio)),
        seq=int(str(seq)),
        holder=str(holder),
        expires_at=float(str(expires)),
        since=float(str(since)),
    )


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing to count
        loop.call_soon_threadsafe(fn)


def _busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    # Ledgers made before waiters aged lack ``since``; old rows read as 0 (= queued now).
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(waiters)")}
    if "since" not in columns:
        db.execute("ALTER TABLE waiters ADD COLUMN since REAL NOT NULL DEFAULT 0")
    # ... and leases lack ``preempt_priority``; old rows read as 0 (asked by a drain).
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(leases)")}
    if "preempt_priority" not in columns:
        db.execute("ALTER TABLE leases ADD COLUMN preempt_priority INTEGER NOT NULL DEFAULT 0")
    # ... and ``pid_started``; old rows read as 0 (unknown: only a missing pid is dead).
    if "pid_started" not in columns:
        db.execute("ALTER TABLE leases ADD COLUMN pid_started REAL NOT NULL DEFAULT 0")


def _why_not(path: Path) -> str:
    """What the filesystem says, when SQLite's own message does not ("unable to open")."""
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return " (the filesystem is read-only)"
    except OSError:
        pass
    return ""


class _Lost(Exception):
    """The ledger file under our connection is not the one we opened (store loss)."""


class SQLiteStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._in_thread = 0  # transactions submitted to the worker thread, not yet done
        # The file we opened (device, inode) and its epoch; see "Store epochs" in DESIGN.md.
        self._ident: tuple[int, int, int, int, int] | None = None
        self._epoch = ""
        self._safe_after = 0.0
        self._stale = False  # an in-transaction check found another file's data
        self._dir_fd: int | None = None  # holds a shared flock on the directory while open

    @property
    def url(self) -> str:
        return f"sqlite:///{self._path}"

    # -- plumbing ---------------------------------------------------------------------

    async def connect(self) -> None:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="model-boss-sqlite"
            )
        await self._run(self._open)

    def _open(self, lost: bool = False) -> None:
        if self._db is not None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            if self._dir_fd is None:
                self._dir_fd = os.open(self._path.parent, os.O_RDONLY)
            db = sqlite3.connect(
                self._path, timeout=0, isolation_level=None, check_same_thread=False
            )
            self._db = db
            self._retry(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone())
            db.execute("PRAGMA synchronous=NORMAL")
            self._epoch, self._safe_after = self._write(
                lambda db: self._init(db, lost), check=False
            )
            self._ident = self._identify()
            self._stale = False
            fcntl.flock(self._dir_fd, fcntl.LOCK_SH)  # "a process uses a ledger here"
        except (sqlite3.Error, OSError) as exc:
            self._close()
            raise StoreUnavailable(
                f"cannot open the SQLite ledger {self._path}: {exc}{_why_not(self._path)}"
            ) from exc

    def _init(self, db: sqlite3.Connection, lost: bool) -> tuple[str, float]:
        """Create the schema; a file without an epoch gets one. A new file replacing one
        we used (``lost``), or created while another process uses a ledger in this
        directory (perhaps a deleted file), grants nothing for RECOVERY_S."""
        _create_schema(db)
        rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if "epoch" in rows:
            return str(rows["epoch"]), float(rows.get("safe_after") or 0)
        assert self._dir_fd is not None
        others = False
        try:
            fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            others = True
        now = self._clock()
        safe_after = now + RECOVERY_S if lost or others else 0.0
        epoch = secrets.token_hex(8)
        db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("epoch", epoch), ("safe_after", repr(safe_after)), ("created", repr(now))],
        )
        return epoch, safe_after

    def _identify(self) -> tuple[int, int, int, int, int]:
        """The files the path names now: the ledger (device, inode, size) and its WAL
        (device, inode). While we are connected SQLite never deletes the WAL, and the
        ledger never shrinks (no VACUUM): anything else is someone replacing them."""
        main = os.stat(self._path)
        wal = os.stat(f"{self._path}-wal")
        return (main.st_dev, main.st_ino, main.st_size, wal.st_dev, wal.st_ino)

    def _changed(self) -> bool:
        """The path no longer names the files we opened (deleted, replaced, truncated)."""
        if self._stale or self._ident is None:
            return True
        try:
            now = self._identify()
        except OSError:
            return True
        dev, ino, size, wal_dev, wal_ino = self._ident
        if (now[0], now[1], now[3], now[4]) != (dev, ino, wal_dev, wal_ino) or now[2] < size:
            return True
        self._ident = now
        return False

    def _reopen(self) -> None:
        log.warning("the SQLite ledger %s was replaced or lost: opening it anew", self._path)
        self._close_db()
        self._open(lost=True)

    def _check_epoch(self, db: sqlite3.Connection) -> None:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        except sqlite3.DatabaseError as exc:  # truncated, overwritten: not our ledger
            raise _Lost from exc
        if row is None or row[0] != self._epoch:
            raise _Lost

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _close(self) -> None:
        self._close_db()
        if self._dir_fd is not None:
            os.close(self._dir_fd)  # and with it the directory's flock
            self._dir_fd = None

    async def _op(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """One transaction. Fast path: when no transaction of this process is with the
        worker thread and the write lock is free (the usual case), run it right here,
        inline, with no ``await`` in between, so nothing else can touch the connection
        meanwhile. Otherwise hand it, with its retries, to the one worker thread, which
        runs transactions one after another, so the event loop never blocks on a lock
        held by another process. Either way it first checks that the file is still the
        one we opened (a replaced file is opened anew: see "Store epochs")."""
        db = self._db
        if db is None:
            raise StoreUnavailable("the SQLite ledger is not connected (call connect())")
        if self._in_thread or self._changed():
            return await self._run(lambda: self._write(body))
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise StoreUnavailable(f"SQLite ledger {self._path}: {exc}") from exc
            return await self._run(lambda: self._write(body))
        try:
            self._check_epoch(db)
            result = body(db)
        except _Lost:
            db.execute("ROLLBACK")
            self._stale = True
            return await self._run(lambda: self._write(body))
        except sqlite3.Error as exc:
            db.execute("ROLLBACK")
            raise StoreUnavailable(f"SQLite ledger {self._path}: {exc}") from exc
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise StoreUnavailable(f"SQLite ledger {self._path}: {exc}") from exc
            await self._run(lambda: self._retry(lambda: db.execute("COMMIT")))
        return result

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreUnavailable("the SQLite ledger is not connected (call connect())")
        loop = asyncio.get_running_loop()
        job = self._executor.submit(fn)
        # Counted until the thread is done with it, even if the caller stops waiting:
        # until then the connection is the thread's, and later transactions queue
        # behind it there instead of running inline.
        self._in_thread += 1
        job.add_done_callback(lambda _: _call_soon(loop, self._thread_done))
        return await asyncio.wrap_future(job)

    def _thread_done(self) -> None:
        self._in_thread -= 1

    def _retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + LOCK_WAIT_S
        delay = 0.0002
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise StoreUnavailable(f"SQLite ledger {self._path}: {exc}") from exc
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"SQLite ledger {self._path} stayed locked for {LOCK_WAIT_S:.0f} s"
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 1.5, 0.005)

    def _write(self, body: Callable[[sqlite3.Connection], T], *, check: bool = True) -> T:
        """Run ``body`` in one BEGIN IMMEDIATE transaction (retrying while locked), on a
        connection to the file the path names now (reopened once if it changed)."""
        try:
            return self._write_once(body, check)
        except _Lost:
            self._stale = True
        try:
            return self._write_once(body, check)
        except _Lost:
            raise StoreUnavailable(
                f"SQLite ledger {self._path}: the file changes under us as we open it"
            ) from None

    def _write_once(self, body: Callable[[sqlite3.Connection], T], check: bool) -> T:
        if check and self._changed():
            self._reopen()
        db = self._db
        if db is None:
            raise StoreUnavailable("the SQLite ledger is not connected (call connect())")
        self._retry(lambda: db.execute("BEGIN IMMEDIATE"))
        try:
            if check:
                self._check_epoch(db)
            result = body(db)
        except sqlite3.Error as exc:  # disk full, read-only file, I/O error...
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise StoreUnavailable(f"SQLite ledger {self._path}: {exc}") from exc
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self._retry(lambda: db.execute("COMMIT"))
        return result

    # -- rules ------------------------------------------------------------------------

    def _pool_row(self, db: sqlite3.Connection, pool: str) -> tuple[int, int, int, int]:
        row = db.execute(
            "SELECT capacity_mb, foreign_mb, token, seq FROM pools WHERE name = ?", (pool,)
        ).fetchone()
        if row is None:
            raise UnknownDevice(f"unknown pool {pool!r}")
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    @staticmethod
    def _purge(db: sqlite3.Connection, pool: str | None, now: float) -> None:
        if pool is None:
            db.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM waiters WHERE expires_at <= ?", (now,))
        else:
            db.execute("DELETE FROM leases WHERE pool = ? AND expires_at <= ?", (pool, now))
            db.execute("DELETE FROM waiters WHERE pool = ? AND expires_at <= ?", (pool, now))

    @staticmethod
    def _used(db: sqlite3.Connection, pool: str) -> int:
        row = db.execute("SELECT COALESCE(SUM(mb), 0) FROM leases WHERE pool = ?", (pool,))
        return int(row.fetchone()[0])

    @staticmethod
    def _waiters(db: sqlite3.Connection, pool: str) -> list[WaiterRecord]:
        rows = db.execute(
            "SELECT id, pool, mb, priority, seq, holder, expires_at, since FROM waiters "
            "WHERE pool = ? ORDER BY priority, seq",
            (pool,),
        )
        return [_waiter(r) for r in rows.fetchall()]

    async def register_pool(self, pool: str, capacity_mb: int) -> None:
        def body(db: sqlite3.Connection) -> None:
            # A new pool's tokens start above any a lost ledger file can have issued.
            floor = token_floor(max(self._clock(), self._safe_after))
            db.execute(
                "INSERT INTO pools (name, capacity_mb, token) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET capacity_mb = excluded.capacity_mb",
                (pool, capacity_mb, floor),
            )

        await self._op(body)

    async def set_foreign(self, pool: str, mb: int) -> None:
        def body(db: sqlite3.Connection) -> None:
            self._pool_row(db, pool)
            db.execute("UPDATE pools SET foreign_mb = ? WHERE name = ?", (max(0, mb), pool))

        await self._op(body)

    async def grant(self, req: LeaseRequest) -> GrantResult:
        def body(db: sqlite3.Connection) -> GrantResult:
            now = self._clock()
            capacity, foreign, token, seq = self._pool_row(db, req.pool)
            if now < self._safe_after:  # the file replaced one that was lost: recovering
                return GrantResult(None, 0, 0, retry_after_s=self._safe_after - now)
            self._purge(db, req.pool, now)
            waiters = self._waiters(db, req.pool)
            mine = next((w for w in waiters if w.id == req.lease_id), None)
            my_seq = mine.seq if mine is not None else NO_SEQ
            since = mine.since if mine is not None and mine.since > 0 else now
            aging = req.aging_s_per_level
            ahead = waiters_ahead_mb(
                waiters,
                req.lease_id,
                queue_key(req.priority, since, aging),
                my_seq,
                now=now,
                aging_s_per_level=aging,
            )
            free = capacity - self._used(db, req.pool) - foreign
            if req.mb + ahead <= free:
                lease = LeaseRecord(
                    id=req.lease_id,
                    pool=req.pool,
                    mb=req.mb,
                    priority=req.priority,
                    holder=req.holder,
                    pid=req.pid,
                    host=req.host,
                    model_id=req.model_id,
                    token=token + 1,
                    granted_at=now,
                    expires_at=now + req.ttl_s,
                    pid_started=req.pid_started,
                )
                db.execute("UPDATE pools SET token = ? WHERE name = ?", (lease.token, req.pool))
                db.execute(
                    f"INSERT INTO leases ({LEASE_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', 0, ?)",
                    (
                        lease.id,
                        lease.pool,
                        lease.mb,
                        lease.priority,
                        lease.holder,
                        lease.pid,
                        lease.host,
                        lease.model_id,
                        lease.token,
                        lease.granted_at,
                        lease.expires_at,
                        lease.pid_started,
                    ),
                )
                if mine is not None:
                    db.execute(
                        "DELETE FROM waiters WHERE pool = ? AND id = ?", (req.pool, req.lease_id)
                    )
                return GrantResult(lease, free, ahead)
            if req.wait:
                if mine is None:
                    db.execute("UPDATE pools SET seq = ? WHERE name = ?", (seq + 1, req.pool))
                    db.execute(
                        "INSERT INTO waiters "
                        "(id, pool, mb, priority, seq, holder, expires_at, since) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            req.lease_id,
                            req.pool,
                            req.mb,
                            req.priority,
                            seq + 1,
                            req.holder,
                            now + req.waiter_ttl_s,
                            now,
                        ),
                    )
                else:
                    db.execute(
                        "UPDATE waiters SET expires_at = ? WHERE pool = ? AND id = ?",
                        (now + req.waiter_ttl_s, req.pool, req.lease_id),
                    )
            return GrantResult(None, free, ahead)

        return await self._op(body)

    async def renew(self, pool: str, lease_id: str, ttl_s: float) -> RenewResult:
        def body(db: sqlite3.Connection) -> RenewResult:
            now = self._clock()
            row = db.execute(
                "SELECT expires_at, preempt, preempt_reason, preempt_priority FROM leases "
                "WHERE id = ? AND pool = ?",
                (lease_id, pool),
            ).fetchone()
            if row is None or float(row[0]) <= now:
                db.execute("DELETE FROM leases WHERE id = ? AND pool = ?", (lease_id, pool))
                raise LeaseLost(f"lease {lease_id} on {pool} expired or was released")
            db.execute("UPDATE leases SET expires_at = ? WHERE id = ?", (now + ttl_s, lease_id))
            return RenewResult(now + ttl_s, bool(row[1]), str(row[2]), int(row[3]))

        return await self._op(body)

    async def release(self, pool: str, lease_id: str) -> bool:
        def body(db: sqlite3.Connection) -> bool:
            cur = db.execute("DELETE FROM leases WHERE id = ? AND pool = ?", (lease_id, pool))
            return cur.rowcount > 0

        return await self._op(body)

    async def withdraw(self, pool: str, waiter_id: str) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM waiters WHERE pool = ? AND id = ?", (pool, waiter_id))

        await self._op(body)

    async def request_preemption(
        self, pool: str, need_mb: int, priority: int, reason: str
    ) -> list[str]:
        def body(db: sqlite3.Connection) -> list[str]:
            self._pool_row(db, pool)
            self._purge(db, pool, self._clock())
            rows = db.execute(f"SELECT {LEASE_COLUMNS} FROM leases WHERE pool = ?", (pool,))
            victims = preemption_victims([_lease(r) for r in rows.fetchall()], need_mb, priority)
            db.executemany(
                "UPDATE leases SET preempt = 1, preempt_reason = ?, preempt_priority = ? "
                "WHERE id = ?",
                [(reason, priority, v.id) for v in victims],
            )
            return [v.id for v in victims]

        return await self._op(body)

    async def drain(self, pool: str | None, reason: str) -> int:
        def body(db: sqlite3.Connection) -> int:
            self._purge(db, pool, self._clock())
            if pool is None:
                cur = db.execute(
                    "UPDATE leases SET preempt = 1, preempt_reason = ?, preempt_priority = 0",
                    (reason,),
                )
            else:
                cur = db.execute(
                    "UPDATE leases SET preempt = 1, preempt_reason = ?, preempt_priority = 0 "
                    "WHERE pool = ?",
                    (reason, pool),
                )
            return cur.rowcount

        return await self._op(body)

    async def pools(self) -> list[PoolStatus]:
        def body(db: sqlite3.Connection) -> list[PoolStatus]:
            self._purge(db, None, self._clock())
            out: list[PoolStatus] = []
            rows = db.execute("SELECT name, capacity_mb, foreign_mb FROM pools ORDER BY name")
            for name, capacity, foreign in rows.fetchall():
                leases = [
                    _lease(r)
                    for r in db.execute(
                        f"SELECT {LEASE_COLUMNS} FROM leases WHERE pool = ? ORDER BY token",
                        (name,),
                    ).fetchall()
                ]
                out.append(
                    PoolStatus(
                        pool=str(name),
                        capacity_mb=int(capacity),
                        used_mb=sum(lease.mb for lease in leases),
                        foreign_mb=int(foreign),
                        leases=leases,
                        waiters=self._waiters(db, str(name)),
                    )
                )
            return out

        return await self._op(body)

    async def now(self) -> float:
        return self._clock()
