"""The grant rules, as pure functions over one pool's rows.

The memory and SQLite stores run these inside their critical section; the Redis
store's Lua scripts (``_lua.py``) implement the same rules and the contract tests
hold all three to them. See ``DESIGN.md`` beside this file.
"""

from __future__ import annotations

from collections.abc import Iterable

from model_boss.leases._records import LeaseRecord, WaiterRecord

__all__ = ["is_ahead", "preemption_victims", "waiters_ahead_mb"]

NO_SEQ = float("inf")


def is_ahead(w: WaiterRecord, priority: int, seq: float) -> bool:
    """A waiter is ahead of (priority, seq) if it is more urgent, or as urgent and earlier."""
    return w.priority < priority or (w.priority == priority and w.seq < seq)


def waiters_ahead_mb(
    waiters: Iterable[WaiterRecord], me: str, priority: int, seq: float = NO_SEQ
) -> int:
    """Memory claimed by live waiters queued ahead of request ``me``.

    A request not yet queued has ``seq = inf``: every waiter of its priority or a more
    urgent one came first. Waiters of a less urgent priority are never ahead.
    """
    return sum(w.mb for w in waiters if w.id != me and is_ahead(w, priority, seq))


def preemption_victims(
    leases: Iterable[LeaseRecord], need_mb: int, priority: int
) -> list[LeaseRecord]:
    """Leases to ask back so that ``need_mb`` more can be granted at ``priority``.

    Only leases of a strictly less urgent priority are asked. Leases already asked
    count toward ``need_mb`` first. Then the least urgent go first and, within a
    priority, the largest (fewest holders disturbed).
    """
    if need_mb <= 0:
        return []
    eligible = [lease for lease in leases if lease.priority > priority]
    asked = sum(lease.mb for lease in eligible if lease.preempt)
    victims: list[LeaseRecord] = []
    for lease in sorted(
        (lease for lease in eligible if not lease.preempt),
        key=lambda lease: (-lease.priority, -lease.mb, lease.granted_at),
    ):
        if asked >= need_mb:
            break
        victims.append(lease)
        asked += lease.mb
    return victims
