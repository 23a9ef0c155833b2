"""Eviction: which slots to stop to free memory. A pure function of its arguments.

A candidate's *keep value* is the reload cost we expect to pay if it goes::

    value = load_s * demand * weight(last_priority)
    demand = the model's recent arrivals (exponentially decayed per arrival; relative units)
    weight(p) = (10 / p) ** e, e = 0.5 by default  (urgent 3.2, high 1.4, normal 1, low 0.7,
                                                    batch 0.45; e = 0 ignores priority)

``load_s * demand`` is the load time times how soon the model will be asked for again (its
expected reload seconds per arrival); the weight prefers slots last used by lower priority.

and victims are taken cheapest *per MB freed* first, then the set is pruned of members that
are not needed to reach the target. Pinned slots are never candidates; busy slots are only
taken when idle ones are not enough, and then the busy ones are drained, not killed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from model_boss.scheduling._types import SlotId

__all__ = ["Cost", "VictimCandidate", "keep_value", "victims"]

Cost = tuple[int, float]
"""What a victim set costs: how many busy slots it drains, then its summed keep value."""


@dataclass(frozen=True, slots=True)
class VictimCandidate:
    slot_id: SlotId
    mb: int
    load_s: float
    demand: float
    last_priority: int = 10
    pinned: bool = False
    busy: bool = False
    priority_exponent: float = 0.5
    value: float = field(init=False, compare=False)

    def __post_init__(self) -> None:
        weight = (10.0 / max(1, self.last_priority)) ** self.priority_exponent
        object.__setattr__(self, "value", self.load_s * self.demand * weight)


def keep_value(c: VictimCandidate) -> float:
    """Expected reload seconds per arrival if ``c`` is evicted, weighted (higher = keep)."""
    return c.value


# Busy slots sort after every idle one whatever the values (a key, not a penalty added to
# the value: demand units grow without bound between rescalings, so no constant is safe).
def _per_mb(c: VictimCandidate) -> tuple[bool, float, int]:
    return c.busy, c.value / c.mb, -c.mb


def _value(c: VictimCandidate) -> tuple[bool, float]:
    return c.busy, c.value


def victims(
    need_mb: int, slots: Sequence[VictimCandidate], *, allow_busy: bool = False
) -> list[SlotId] | None:
    """The cheapest set of slots whose memory adds up to ``need_mb``; None if there is none.

    ``[]`` means nothing has to go (``need_mb <= 0``).
    """
    chosen = select(need_mb, slots, allow_busy=allow_busy)
    return None if chosen is None else [c.slot_id for c in chosen[1]]


def select(
    need_mb: int, slots: Sequence[VictimCandidate], *, allow_busy: bool = False
) -> tuple[Cost, list[VictimCandidate]] | None:
    """Like :func:`victims`, also returning the set's cost: (busy members, summed value)."""
    if need_mb <= 0:
        return (0, 0.0), []
    pool = [c for c in slots if c.mb > 0 and not c.pinned and (allow_busy or not c.busy)]
    if sum(c.mb for c in pool) < need_mb:
        return None
    pool.sort(key=_per_mb)
    chosen: list[VictimCandidate] = []
    freed = 0
    for c in pool:
        chosen.append(c)
        freed += c.mb
        if freed >= need_mb:
            break
    # Prune: drop the most valuable members that the target does not need.
    for c in sorted(chosen, key=_value, reverse=True):
        if freed - c.mb >= need_mb:
            chosen.remove(c)
            freed -= c.mb
    busy = sum(c.busy for c in chosen) if allow_busy else 0
    return (busy, sum(c.value for c in chosen)), chosen
