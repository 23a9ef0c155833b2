"""Holder processes for a fault, and the auditor of what they believed.

The auditor merges every holder's record into one timeline of believed leases (from the
moment ``acquire`` returned to the moment belief ended: release, the local deadline, or
the process's death) and reports, over every instant of the run:

- ``over_capacity``: instants (maximal stretches) where believed memory > capacity;
- ``token_violations``: a lease whose grant was sent after another lease had been
  granted, yet carries a token no larger (tokens must rise across the whole run);
- ``hung``: acquires that ran past their timeout by more than a margin, or holders that
  did not finish by themselves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.holder import CAPACITY_MB

ROOT = Path(__file__).resolve().parents[2]
#: An acquire may overrun its timeout by this much (8 processes on 2 cores).
HANG_MARGIN_S = 1.5


@dataclass
class Held:
    lease_id: str
    token: int
    mb: int
    sent: float
    got: float
    end: float | None = None
    why: str = ""


@dataclass
class Figures:
    fault: str
    holders: int
    grants: int = 0
    timeouts: int = 0
    unavailable: int = 0
    errors: int = 0
    lost: int = 0
    max_believed_mb: int = 0
    over_capacity: int = 0
    over_capacity_s: float = 0.0
    token_violations: int = 0
    hung: int = 0
    grant_times: list[float] = field(default_factory=list)

    def grants_after(self, t: float) -> int:
        return sum(1 for g in self.grant_times if g > t)

    def line(self) -> str:
        return (
            f"[fault] {self.fault}: holders={self.holders} grants={self.grants} "
            f"timeouts={self.timeouts} unavailable={self.unavailable} errors={self.errors} "
            f"lost={self.lost} max_believed={self.max_believed_mb}/{CAPACITY_MB} MiB "
            f"over_capacity_instants={self.over_capacity} ({self.over_capacity_s:.3f} s) "
            f"token_violations={self.token_violations} hung={self.hung}"
        )


class Holders:
    """``n`` holder processes on ``url`` for ``seconds``; kill/stop/continue them."""

    def __init__(
        self, urls: list[str], tmp: Path, *, n: int = 8, seconds: float = 10.0, ttl: float = 2.0
    ) -> None:
        self.seconds = seconds
        self.files = [tmp / f"holder-{i}.log" for i in range(n)]
        self.killed_at: dict[int, float] = {}
        self.stopped: dict[int, list[tuple[float, float]]] = {}  # SIGSTOP .. SIGCONT
        self.started = time.monotonic()
        self._errs = [open(tmp / f"holder-{i}.err", "w") for i in range(n)]  # noqa: SIM115
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.faults.holder",
                    urls[i % len(urls)],
                    str(self.files[i]),
                    str(seconds),
                    str(1000 + i),
                    str(ttl),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL,
                stderr=self._errs[i],
            )
            for i in range(n)
        ]

    def kill(self, i: int) -> None:
        self.procs[i].kill()
        self.killed_at[i] = time.monotonic()

    def stop(self, i: int) -> None:
        os.kill(self.procs[i].pid, signal.SIGSTOP)
        self.stopped.setdefault(i, []).append((time.monotonic(), float("inf")))

    def cont(self, i: int) -> None:
        os.kill(self.procs[i].pid, signal.SIGCONT)
        start, _ = self.stopped[i][-1]
        self.stopped[i][-1] = (start, time.monotonic())

    def wait(self, grace_s: float = 20.0) -> int:
        """Wait for every holder; returns how many had to be killed (hung)."""
        deadline = self.started + self.seconds + grace_s
        hung = 0
        for i, proc in enumerate(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait()
                self.killed_at.setdefault(i, time.monotonic())
                hung += 1
        for err in self._errs:
            err.close()
        return hung

    def audit(self, fault: str, *, hung_procs: int = 0) -> Figures:
        figures = Figures(fault, len(self.procs), hung=hung_procs)
        held: list[Held] = []
        for i, path in enumerate(self.files):
            held += _read(path, figures, self.killed_at.get(i), self.stopped.get(i, []))
        _sweep(held, figures)
        _tokens(held, figures)
        print(figures.line(), flush=True)
        return figures


def _read(
    path: Path, figures: Figures, killed_at: float | None, stopped: list[tuple[float, float]]
) -> list[Held]:
    mine: dict[str, Held] = {}
    done = False
    last_try: float | None = None
    for line in path.read_text().splitlines():
        kind, *rest = line.split(" ")
        if kind == "try":
            last_try = float(rest[0])
        elif kind == "grant":
            lease_id, token, mb, sent, got, _ = rest
            mine[lease_id] = Held(lease_id, int(token), int(mb), float(sent), float(got))
            figures.grants += 1
            figures.grant_times.append(float(got))
            last_try = None
        elif kind in ("timeout", "unavailable", "error"):
            t0, t1, wait = float(rest[0]), float(rest[1]), float(rest[2])
            name = {"timeout": "timeouts", "error": "errors"}.get(kind, kind)
            setattr(figures, name, getattr(figures, name) + 1)
            asleep = sum(max(0.0, min(t1, b) - max(t0, a)) for a, b in stopped)
            if t1 - t0 - asleep > wait + HANG_MARGIN_S:  # a stopped process is no hang
                figures.hung += 1
            last_try = None
        elif kind == "end":
            lease_id, ended, why = rest
            mine[lease_id].end = float(ended)
            mine[lease_id].why = why
            figures.lost += why == "lost"
        elif kind == "done":
            done = True
    if not done and killed_at is None:
        figures.hung += 1
    if last_try is not None and killed_at is not None and killed_at - last_try > 30:
        figures.hung += 1
    for h in mine.values():
        if h.end is None:  # died holding it: believed until death
            h.end = killed_at if killed_at is not None else float("inf")
    return list(mine.values())


def _sweep(held: list[Held], figures: Figures) -> None:
    events = sorted(
        [(h.got, 1, h.mb) for h in held] + [(h.end or 0.0, 0, -h.mb) for h in held]
    )  # at one instant, ends before starts
    total, over_since = 0, None
    for t, _, delta in events:
        total += delta
        figures.max_believed_mb = max(figures.max_believed_mb, total)
        if total > CAPACITY_MB and over_since is None:
            over_since = t
            figures.over_capacity += 1
        elif total <= CAPACITY_MB and over_since is not None:
            figures.over_capacity_s += t - over_since
            over_since = None


def _tokens(held: list[Held], figures: Figures) -> None:
    """Lease B's grant was sent after lease A had been granted => token(B) > token(A)."""
    by_got = sorted(held, key=lambda h: h.got)
    best, i = -1, 0
    seen: set[int] = set()
    for b in sorted(held, key=lambda h: h.sent):
        while i < len(by_got) and by_got[i].got < b.sent:
            best = max(best, by_got[i].token)
            i += 1
        if b.token <= best or b.token in seen:
            figures.token_violations += 1
        seen.add(b.token)
