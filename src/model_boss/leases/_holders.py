"""Is a lease's holder, a process on this host, still alive?

A pid alone is not enough: pids are reused. A lease records when its process started
(psutil's ``create_time``); a process with that pid but another start time is someone
else, and the lease's holder is gone.
"""

from __future__ import annotations

import psutil

__all__ = ["holder_gone", "process_started"]

#: create_time comes from boot time + clock ticks: equal for one process, within rounding.
SAME_START_S = 1.0


def process_started(pid: int) -> float:
    """When ``pid`` started (seconds since the epoch); 0.0 if that cannot be read."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return 0.0


def holder_gone(pid: int, started: float) -> bool:
    """True when process ``pid`` (started at ``started``; 0: unknown) no longer exists on
    this host. Unsure (no permission to look) counts as alive."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # dead, not yet waited for
            return True
        return started > 0 and abs(proc.create_time() - started) > SAME_START_S
    except psutil.NoSuchProcess:
        return True
    except (psutil.AccessDenied, OSError):
        return False
