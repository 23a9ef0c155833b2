"""What a lease request may say: every number finite and in range, every type checked.

Each check raises :class:`~model_boss.errors.InvalidLeaseRequest` naming the argument,
so nothing malformed reaches a store (where ``inf``, ``NaN`` or a huge int would turn
into a never-expiring lease, a false ``StoreUnavailable`` or a raw ``OverflowError``).
"""

from __future__ import annotations

import math

from model_boss.errors import InvalidLeaseRequest
from model_boss.priority import parse_priority

__all__ = [
    "MAX_MB",
    "MAX_PRIORITY",
    "MAX_TTL_S",
    "MIN_TTL_S",
    "check_mb",
    "check_model_id",
    "check_poll",
    "check_priority",
    "check_timeout",
    "check_ttl",
]

#: Renewals go every TTL/3: at 0.25 s that is one every 83 ms, still several round trips
#: to a store on the LAN. Shorter leases would be lost before their first renewal.
MIN_TTL_S = 0.25
#: A day. A lease that must outlive its holder longer than that is a bug, not a lease.
MAX_TTL_S = 86_400.0
#: Priorities sort as ``(priority - 1) * aging`` seconds: keep that a sane number.
MAX_PRIORITY = 1000
#: 2**40 MiB (an exbibyte): far beyond any pool, far within every store's integers.
MAX_MB = 2**40
MAX_MODEL_ID = 512


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidLeaseRequest(f"{name} must be a number of seconds, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidLeaseRequest(f"{name} is out of range: {value!r}") from None
    if not math.isfinite(number):
        raise InvalidLeaseRequest(f"{name} must be finite, got {value!r}")
    return number


def check_ttl(value: object, name: str = "ttl_s") -> float:
    ttl = _real(value, name)
    if not MIN_TTL_S <= ttl <= MAX_TTL_S:
        raise InvalidLeaseRequest(
            f"{name} must be between {MIN_TTL_S:g} and {MAX_TTL_S:g} s, got {value!r}"
        )
    return ttl


def check_timeout(value: object) -> float | None:
    """``None`` waits forever; otherwise a finite number of seconds >= 0."""
    if value is None:
        return None
    timeout = _real(value, "timeout")
    if timeout < 0:
        raise InvalidLeaseRequest(f"timeout must be >= 0 (None waits forever), got {value!r}")
    return timeout


def check_poll(value: object) -> float:
    poll = _real(value, "poll_s")
    if not 0 < poll <= 60:
        raise InvalidLeaseRequest(f"poll_s must be in (0, 60] s, got {value!r}")
    return poll


def check_priority(value: object) -> int:
    if not isinstance(value, int | str):
        raise InvalidLeaseRequest(f"priority must be a name or an int, got {value!r}")
    try:
        prio = parse_priority(value)
    except ValueError as exc:
        raise InvalidLeaseRequest(str(exc)) from None
    if prio > MAX_PRIORITY:
        raise InvalidLeaseRequest(f"priority must be <= {MAX_PRIORITY}, got {value!r}")
    return prio


def check_mb(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidLeaseRequest(f"{name} must be an int (MiB), got {value!r}")
    if not 0 < value <= MAX_MB:
        raise InvalidLeaseRequest(f"{name} must be between 1 and {MAX_MB} MiB, got {value}")
    return value


def check_model_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidLeaseRequest(f"model_id must be a string or None, got {value!r}")
    if len(value) > MAX_MODEL_ID:
        raise InvalidLeaseRequest(f"model_id is longer than {MAX_MODEL_ID} characters")
    return value
