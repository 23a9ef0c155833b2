"""The grant rules, as pure functions over one pool's rows.

The memory and SQLite stores run these inside their critical section; the Redis
store's Lua scripts (``_lua.py``) implement the same rules and the contract tests
hold all three to them. See ``DESIGN.md`` beside this file.
"""

from __future__ import annotations

from collections.abc import Iterable

from model_boss.leases._records import LeaseRecord, WaiterRecord

__all__ = ["preemption_victims", "queue_key", "waiters_ahead_mb"]

NO_SEQ = float("inf")


def queue_key(priority: int, since: float, aging_s_per_level: float) -> float:
    """Where a waiter sorts: as if it had queued ``(priority - 1) * aging`` seconds later.

    So a more urgent request goes first, but a less urgent waiter that has waited longer
    than the difference overtakes new urgent work: nothing waits forever.
    """
    return since + (priority - 1) * aging_s_per_level


def waiters_ahead_mb(
    waiters: Iterable[WaiterRecord],
    me: str,
    key: float,
    seq: float = NO_SEQ,
    *,
    now: float,
    aging_s_per_level: float,
) -> int:
    """Memory claimed by live waiters queued ahead of request ``me`` (key ``key``).

    A waiter is ahead if its :func:`queue_key` is smaller, or equal with an earlier
    arrival ``seq``. A request not yet queued has ``seq = inf`` and the key of ``now``.
    A waiter whose queueing time is unknown (``since <= 0``) counts as queued ``now``.
    """
    total = 0
    for w in waiters:
        if w.id == me:
            continue
        w_key = queue_key(w.priority, w.since if w.since > 0 else now, aging_s_per_level)
        if w_key < key or (w_key == key and w.seq < seq):
            total += w.mb
    return total


def preemption_victims(
    leases: Iterable[LeaseRecord], need_mb: int, priority: int
) -> list[LeaseRecord]:
    """Leases to ask back so that ``need_mb`` more can be granted at ``priority``.

    Only leases of a strictly less urgent priority are asked. Leases already asked at
    least this urgently (or by a drain) count toward ``need_mb`` first; one asked only by a
    less urgent waiter may be asked again, at this priority, because its holder may have
    declined the first request for being as urgent as the asker. Then the least urgent go
    first and, within a priority, the largest (fewest holders disturbed).
    """
    if need_mb <= 0:
        return []
    eligible = [lease for lease in leases if lease.priority > priority]
    asked = sum(lease.mb for lease in eligible if _asked(lease, priority))
    victims: list[LeaseRecord] = []
    for lease in sorted(
        (lease for lease in eligible if not _asked(lease, priority)),
        key=lambda lease: (-lease.priority, -lease.mb, lease.granted_at),
    ):
        if asked >= need_mb:
            break
        victims.append(lease)
        asked += lease.mb
    return victims


def _asked(lease: LeaseRecord, priority: int) -> bool:
    """Already asked by someone at least as urgent as ``priority`` (a drain asks as 0)."""
    return lease.preempt and lease.preempt_priority <= priority
