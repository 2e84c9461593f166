"""The waiting queue of one replica, after vLLM V1's `request_queue.py`, with vllm-ltr's
starvation prevention.

Requests wait in a heap on `Request.sort_key()`: (promoted first, rank, arrival, id), as
vLLM's priority queue orders `(priority, arrival_time)`. A request is re-keyed (promoted,
or its promotion ends) by pushing it again: the old entry goes stale and is dropped when it
reaches the top, so no entry is ever searched for. An entry is live while its key is the
very tuple the request was last queued under (`Request.queued_key`): an identity test.

Starvation prevention (a policy's `starvation = (threshold, quantum)`): a request left
waiting `threshold` iterations is promoted; the promotion lasts while it waits and for
`quantum` iterations once it runs, as vllm-ltr counts its quantum in iterations run.
Promoted requests go first, among themselves by rank, as vllm-ltr sorts by
(promoted, score).
"""

from __future__ import annotations

import heapq
from collections import deque

from .policy import Policy
from .request import Request, State


class WaitingQueue:
    def __init__(self, policy: Policy) -> None:
        self.rank = policy.rank
        self.starvation = policy.starvation
        self.heap: list[tuple[tuple, Request]] = []  # may hold stale entries: empty means
        # nothing waits, the converse needs `bool(queue)`
        self._queued: deque[tuple[int, Request]] = deque()  # (entered waiting at, request)
        self._expiring: deque[tuple[int, Request]] = deque()  # (promotion ends at, request),
        # in admission order: a promoted request's quantum starts when it is admitted

    def __bool__(self) -> bool:
        """Whether a request waits."""
        return self.head() is not None

    def head(self) -> Request | None:
        """The request served next, or None; drops stale entries (re-keyed requests)."""
        h = self.heap
        while h:
            key, req = h[0]
            if key is req.queued_key and req.state is State.WAITING:
                return req
            heapq.heappop(h)
        return None

    def _push(self, req: Request) -> None:
        """Queue `req` under its current key; an entry under an earlier key goes stale."""
        key = req.queued_key = req.sort_key()
        heapq.heappush(self.heap, (key, req))

    def add(self, req: Request, now: float, iteration: int) -> None:
        """`req` enters the queue (on arrival, or preempted) and is ranked at `now`."""
        req.state = State.WAITING
        req.rank = self.rank(req, now)
        req.waited_since = iteration
        if self.starvation is not None:
            self._queued.append((iteration, req))
        self._push(req)

    def pop(self) -> Request:
        """Take the request served next; call only after `head()` found one."""
        return heapq.heappop(self.heap)[1]

    def promote(self, iteration: int) -> None:
        """At the start of `iteration`: end the promotions whose quantum is spent, and
        promote the requests that have waited `threshold` iterations."""
        if self.starvation is None:
            return
        threshold = self.starvation[0]
        while self._expiring and self._expiring[0][0] <= iteration:
            req = self._expiring.popleft()[1]
            req.promoted_at = -1
            if req.state is State.WAITING:
                # Still not scheduled: back to its rank, and its wait counts afresh, so it is
                # promoted again after another `threshold` iterations (not left to starve).
                req.waited_since = iteration
                self._queued.append((iteration, req))
                self._push(req)
        while self._queued and self._queued[0][0] + threshold <= iteration:
            since, req = self._queued.popleft()
            if req.state is State.WAITING and req.waited_since == since and not req.promoted:
                req.promoted_at = iteration
                self._push(req)

    def admitted(self, req: Request, iteration: int) -> None:
        """`req` left the queue for a seat in `iteration`: a promoted request keeps its
        seat against better-ranked heads, and its quantum counts from now."""
        promoted = req.protected = req.promoted_at >= 0  # req.promoted, written out
        if promoted:
            assert self.starvation is not None  # only starvation prevention promotes
            self._expiring.append((iteration + self.starvation[1], req))
