"""Request and lease priorities, shared by every layer.

Lower numbers win: ``urgent(1) > high(5) > normal(10) > low(20) > batch(50)``.
Everywhere a priority is accepted, a :class:`Priority`, its name (any case) or an
int is accepted; :func:`parse_priority` does the conversion.
"""

from __future__ import annotations

import enum

__all__ = ["Priority", "PriorityLike", "parse_priority"]


class Priority(enum.IntEnum):
    URGENT = 1
    HIGH = 5
    NORMAL = 10
    LOW = 20
    BATCH = 50

    @property
    def label(self) -> str:
        return self.name.lower()


PriorityLike = Priority | int | str


def parse_priority(value: PriorityLike) -> int:
    """Return the numeric priority of ``value``; ints outside the named classes are kept.

    Raises :class:`ValueError` for an unknown name, a bool, or an int < 1.
    """
    if isinstance(value, Priority):
        return int(value)
    if isinstance(value, bool):
        raise ValueError(f"priority must be a name or a positive int, not {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"priority must be >= 1, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_priority(int(text))
        try:
            return int(Priority[text.upper()])
        except KeyError:
            names = ", ".join(p.label for p in Priority)
            raise ValueError(f"unknown priority {value!r} (expected one of {names})") from None
    raise ValueError(f"priority must be a name or a positive int, not {value!r}")
