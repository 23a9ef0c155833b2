"""The request queue: per-model heaps ordered by an aged key, and the per-client cooldown gate.

A request's *key* is ``arrival + (priority - 1) * aging_s_per_level``. Ordering by that fixed
key is FIFO within a class, puts urgent work first, and is aging at the same time: a request
of a lower class that has waited long enough sorts ahead of new higher-class work, so nothing
waits forever. Because the key never changes, heaps stay valid (see DESIGN.md).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from model_boss.scheduling._types import RequestId

__all__ = ["CooldownGate", "QueuedRequest", "RequestQueue"]


@dataclass(slots=True, eq=False)
class QueuedRequest:
    request_id: RequestId
    model: str
    priority: int
    client: str
    arrived: float
    key: float
    seq: int
    stay_warm_s: float | None = None
    cooldown_s: float = 0.0
    cancelled: bool = False


@dataclass(slots=True)
class _ModelQueue:
    heap: list[tuple[float, int, QueuedRequest]] = field(default_factory=list)
    live: int = 0


class RequestQueue:
    """Queued requests, one heap per model, ordered by key."""

    def __init__(self, aging_s_per_level: float) -> None:
        self._aging = aging_s_per_level
        self._models: dict[str, _ModelQueue] = {}
        self._by_id: dict[RequestId, QueuedRequest] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._by_id

    def key_for(self, priority: int, arrived: float) -> float:
        return arrived + (priority - 1) * self._aging

    def make(
        self,
        request_id: RequestId,
        model: str,
        priority: int,
        client: str,
        arrived: float,
        stay_warm_s: float | None = None,
        cooldown_s: float = 0.0,
    ) -> QueuedRequest:
        self._seq += 1
        key = self.key_for(priority, arrived)
        return QueuedRequest(
            request_id, model, priority, client, arrived, key, self._seq, stay_warm_s, cooldown_s
        )

    def push(self, req: QueuedRequest) -> None:
        mq = self._models.get(req.model)
        if mq is None:
            mq = self._models[req.model] = _ModelQueue()
        heapq.heappush(mq.heap, (req.key, req.seq, req))
        mq.live += 1
        self._by_id[req.request_id] = req

    def count(self, model: str) -> int:
        mq = self._models.get(model)
        return 0 if mq is None else mq.live

    def head(self, model: str) -> QueuedRequest | None:
        mq = self._models.get(model)
        return None if mq is None else self._clean_head(mq)

    def pop(self, model: str) -> QueuedRequest | None:
        """Remove and return the best request for ``model``."""
        mq = self._models.get(model)
        if mq is None or self._clean_head(mq) is None:
            return None
        _, _, req = heapq.heappop(mq.heap)
        mq.live -= 1
        del self._by_id[req.request_id]
        return req

    def cancel(self, request_id: RequestId) -> QueuedRequest | None:
        req = self._by_id.pop(request_id, None)
        if req is None:
            return None
        req.cancelled = True
        self._models[req.model].live -= 1
        return req

    def waiting(self, model: str) -> list[QueuedRequest]:
        """The queued requests for ``model``, in no particular order (a copy)."""
        mq = self._models.get(model)
        return [] if mq is None else [e[2] for e in mq.heap if not e[2].cancelled]

    def take(self, model: str, which: Callable[[QueuedRequest], bool]) -> list[QueuedRequest]:
        """Remove and return the queued requests for ``model`` that ``which`` selects, in
        key order."""
        mq = self._models.get(model)
        if mq is None:
            return []
        taken: list[tuple[float, int, QueuedRequest]] = []
        kept: list[tuple[float, int, QueuedRequest]] = []
        for entry in mq.heap:
            if not entry[2].cancelled:
                (taken if which(entry[2]) else kept).append(entry)
        if not taken:
            return []
        heapq.heapify(kept)
        mq.heap = kept
        mq.live -= len(taken)
        taken.sort(key=lambda e: (e[0], e[1]))
        for _, _, req in taken:
            del self._by_id[req.request_id]
        return [req for _, _, req in taken]

    def drain_model(self, model: str) -> list[QueuedRequest]:
        """Remove every queued request for ``model`` (in key order)."""
        out: list[QueuedRequest] = []
        while (req := self.pop(model)) is not None:
            out.append(req)
        return out

    def _clean_head(self, mq: _ModelQueue) -> QueuedRequest | None:
        heap = mq.heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][2] if heap else None


class CooldownGate:
    """Holds back requests with ``cooldown_s > 0`` so one client's requests start at least
    that many seconds apart (``x_cooldown``), in the client's own order.

    At most one cooled request per client is in the queue at a time (its *outstanding*
    request); the next one is released ``cooldown_s`` after that one is dispatched.
    """

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._held: dict[str, deque[QueuedRequest]] = {}
        self._outstanding: dict[str, RequestId] = {}
        self._due: list[tuple[float, int, str]] = []
        self._held_count = 0

    def __len__(self) -> int:
        return self._held_count

    def admit(self, req: QueuedRequest, now: float) -> bool:
        """True if ``req`` may enter the queue now; otherwise it is held."""
        client = req.client
        if req.cooldown_s <= 0:
            return True
        held = self._held.get(client)
        if held is None and client not in self._outstanding:
            release_at = self._last.get(client, float("-inf")) + req.cooldown_s
            if release_at <= now:
                self._outstanding[client] = req.request_id
                return True
            heapq.heappush(self._due, (release_at, req.seq, client))
        if held is None:
            held = self._held[client] = deque()
        held.append(req)
        self._held_count += 1
        return False

    def left_queue(self, req: QueuedRequest, now: float, dispatched: bool) -> None:
        """``req`` left the queue: dispatched now, or cancelled/rejected."""
        client = req.client
        if dispatched:
            self._last[client] = now
        if self._outstanding.get(client) != req.request_id:
            return
        del self._outstanding[client]
        held = self._held.get(client)
        if held:
            release_at = self._last.get(client, float("-inf")) + held[0].cooldown_s
            heapq.heappush(self._due, (release_at, held[0].seq, client))

    def cancel(self, req: QueuedRequest) -> bool:
        """Drop a held request; False if it is not held here."""
        held = self._held.get(req.client)
        if not held or req not in held:
            return False
        was_first = held[0] is req
        held.remove(req)
        self._held_count -= 1
        if not held:
            del self._held[req.client]
        elif was_first and req.client not in self._outstanding:
            release_at = self._last.get(req.client, float("-inf")) + held[0].cooldown_s
            heapq.heappush(self._due, (release_at, held[0].seq, req.client))
        return True

    def find(self, request_id: RequestId) -> QueuedRequest | None:
        for held in self._held.values():
            for req in held:
                if req.request_id == request_id:
                    return req
        return None

    def release_due(self, now: float) -> list[QueuedRequest]:
        out: list[QueuedRequest] = []
        due = self._due
        while due and due[0][0] <= now:
            _, seq, client = heapq.heappop(due)
            held = self._held.get(client)
            if not held or held[0].seq != seq or client in self._outstanding:
                continue
            req = held.popleft()
            self._held_count -= 1
            if not held:
                del self._held[client]
            self._outstanding[client] = req.request_id
            out.append(req)
        return out

    def next_release(self) -> float | None:
        return self._due[0][0] if self._due else None
