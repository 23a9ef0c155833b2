"""After a store loses state: how long it grants nothing, and tokens that never go back.

See "Store epochs" in ``DESIGN.md`` beside this file for the argument.
"""

from __future__ import annotations

__all__ = ["MAX_BELIEF_S", "RECOVERY_S", "TOKEN_EPOCH", "TOKEN_SHIFT", "token_floor"]

#: A holder believes its lease for at most this long after it sent its last successful
#: renewal (or the grant), whatever the TTL: a store that lost the lease cannot reach a
#: holder that cannot reach it, so this bounds how long anyone may still believe in a
#: lease that a store has forgotten. Renewals go at least every 2 s, so this is three
#: chances to renew.
MAX_BELIEF_S = 6.0
#: How long a store that lost state grants nothing: every belief has ended by then
#: (MAX_BELIEF_S) with a margin for clock rates and a server start rounded to the second.
RECOVERY_S = MAX_BELIEF_S + 1.5
#: Fencing tokens are ``(store seconds since TOKEN_EPOCH) << TOKEN_SHIFT`` when a pool's
#: counter starts (or restarts after a loss), plus one per grant. A restarted counter so
#: starts above every token the lost one can have issued, unless that one issued more than
#: 2**21 (2 million) grants per second of its life; 2**53 (exact in Lua and JSON) lasts
#: until the year 2161.
TOKEN_EPOCH = 1_735_689_600  # 2025-01-01T00:00:00Z
TOKEN_SHIFT = 21


def token_floor(store_time: float) -> int:
    """The first token a pool's counter may issue when it starts at ``store_time``."""
    return max(0, int(store_time) - TOKEN_EPOCH) << TOKEN_SHIFT
