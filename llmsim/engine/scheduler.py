"""The per-iteration scheduler of one replica, after vLLM V1's `Scheduler.schedule()`.

`schedule` picks the batch of one iteration and applies its KV allocations and
preemptions; `complete` applies the iteration's outcome (tokens emitted, requests done).
The order of decisions mirrors vLLM: running requests first, in running order, each
taking its next chunk and preempting victims when the pool is dry; then, only if nothing
was preempted, waiting requests in policy order while budget, seats and blocks last.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import NamedTuple

from ..policies.policy import Policy
from .blocks import BlockPool
from .config import EngineConfig
from .cost import IterationShape
from .request import Request, State


class Batch(NamedTuple):
    items: list[tuple[Request, int]]  # (request, tokens fed this iteration), in batch order
    preempted: list[Request]
    shape: IterationShape | None  # None when nothing was scheduled


class Scheduler:
    def __init__(self, config: EngineConfig, pool: BlockPool, policy: Policy) -> None:
        self.config = config
        self.pool = pool
        self.policy = policy
        self.waiting: list[tuple[tuple, Request]] = []  # heap; may hold stale entries
        self.running: dict[int, Request] = {}  # by id, in admission order
        self.iteration = 0
        self._queued: deque[tuple[int, Request]] = deque()  # (entered waiting at, request)
        self._expiring: deque[tuple[int, Request]] = deque()  # (promotion ends at, request),
        # in admission order: a promoted request's quantum starts when it is admitted

    def has_work(self) -> bool:
        return bool(self.running or self.has_waiting())

    def has_waiting(self) -> bool:
        """Whether a request waits; drops stale heap entries (re-keyed requests) on the way."""
        w = self.waiting
        while w and (w[0][1].state is not State.WAITING or w[0][0] != w[0][1].sort_key()):
            heapq.heappop(w)
        return bool(w)

    def begin_iteration(self) -> None:
        """Count the iteration; with starvation prevention, promote requests that waited
        `threshold` iterations (vllm-ltr's rule). A promotion lasts while the request waits
        and for `quantum` iterations once it runs, as vllm-ltr counts its quantum in
        iterations run; promoted requests go first, among themselves by rank."""
        self.iteration += 1
        if self.policy.starvation is None:
            return
        threshold = self.policy.starvation[0]
        while self._expiring and self._expiring[0][0] <= self.iteration:
            req = self._expiring.popleft()[1]
            req.promoted_at = -1
            if req.state is State.WAITING:
                # Still not scheduled: back to its rank, and its wait counts afresh, so it is
                # promoted again after another `threshold` iterations (not left to starve).
                req.waited_since = self.iteration
                self._queued.append((self.iteration, req))
                heapq.heappush(self.waiting, (req.sort_key(), req))
        while self._queued and self._queued[0][0] + threshold <= self.iteration:
            since, req = self._queued.popleft()
            if req.state is State.WAITING and req.waited_since == since and not req.promoted:
                req.promoted_at = self.iteration
                heapq.heappush(self.waiting, (req.sort_key(), req))

    def can_accept(self, req: Request) -> bool:
        return self.pool.fits_ever(req)

    def add(self, req: Request, now: float) -> None:
        assert self.can_accept(req)
        req.state = State.WAITING
        req.rank = self.policy.rank(req, now)
        req.waited_since = self.iteration
        if self.policy.starvation is not None:
            self._queued.append((self.iteration, req))
        heapq.heappush(self.waiting, (req.sort_key(), req))

    def schedule(self, now: float) -> Batch:
        self.begin_iteration()
        return self.plan(now)

    def plan(self, now: float) -> Batch:
        """The iteration's batch, once `begin_iteration` has run."""
        budget = self.config.max_num_batched_tokens
        items: list[tuple[Request, int]] = []
        preempted: list[Request] = []

        order = list(self.running.values())
        i = 0
        while i < len(order) and budget > 0:
            req = order[i]
            n = min(req.num_tokens - req.computed, budget)
            assert n > 0
            while not self.pool.can_append(req, n):
                victim = self._victim(order, now)
                at = order.index(victim)
                del order[at]
                if at < i:  # already in this batch: give its tokens back
                    k = next(j for j, (r, _) in enumerate(items) if r is victim)
                    budget += items.pop(k)[1]
                    i -= 1
                self._preempt(victim, now)
                preempted.append(victim)
                if victim is req:
                    break
            if req.state is not State.RUNNING:
                # It preempted itself: it was the victim, so the running requests after
                # it rank better (FCFS: there are none) and may fit in what it freed, as
                # vLLM goes on with them.
                continue
            self.pool.append(req, n)
            items.append((req, n))
            budget -= n
            i += 1
        if preempted:  # no admissions in an iteration that preempted, as in vLLM
            self.running = {r.id: r for r in order}
        else:
            self.admit(items, budget, now, preempted)
        return Batch(items, preempted, batch_shape(items) if items else None)

    def admit(self, items: list[tuple[Request, int]], budget: int, now: float,
              preempted: list[Request]) -> int:
        """Admit waiting requests in policy order while budget, seats and blocks last;
        returns the budget left. The head of the queue blocks those behind it, unless the
        policy is preemptive and a running request ranks worse: that one is evicted."""
        while budget > 0 and self.has_waiting():
            req = self.waiting[0][1]
            if req in preempted:  # evicted in this iteration: not back before the next
                break
            n = min(req.num_tokens - req.computed, budget)
            if len(self.running) >= self.config.max_num_seqs or not self.pool.can_allocate(req, n):
                if self.policy.preemptive and self._evict_for(req, now, items, preempted):
                    budget = self.config.max_num_batched_tokens - sum(k for _, k in items)
                    continue
                break
            heapq.heappop(self.waiting)
            self.pool.allocate(req, n)
            req.protected = req.promoted
            if req.promoted:  # its quantum counts from now
                self._expiring.append((self.iteration + self.policy.starvation[1], req))
            req.state = State.RUNNING
            self.running[req.id] = req
            items.append((req, n))
            budget -= n
        return budget

    def complete(self, batch: Batch, now: float) -> tuple[list[Request], list[Request]]:
        """Apply an iteration that ended at `now`: returns (requests that emitted a token,
        requests that finished)."""
        emitted: list[Request] = []
        finished: list[Request] = []
        for req, n in batch.items:
            req.computed += n
            if req.computed < req.num_tokens:
                continue  # a prompt chunk that is not the last one
            req.emitted += 1
            emitted.append(req)
            if req.emitted == req.output_tokens:
                req.state = State.FINISHED
                self.pool.free(req)
                del self.running[req.id]
                finished.append(req)
        return emitted, finished

    def _victim(self, order: list[Request], now: float) -> Request:
        if self.policy.victim == "last":
            return order[-1]
        if self.policy.preemptive:
            return max(order, key=lambda r: self._key_now(r, now))
        # vLLM's max over (priority, arrival): ties go to the first in running order, so the
        # id, which breaks ties in the waiting queue, must not break them here.
        return max(order, key=lambda r: r.sort_key()[:-1])

    def _key_now(self, req: Request, now: float) -> tuple[int, float, float, int]:
        if req.promoted:
            return req.sort_key()
        return (1, self.policy.rank(req, now), req.arrival, req.id)

    def _evict_for(self, head: Request, now: float, items: list[tuple[Request, int]],
                   preempted: list[Request]) -> bool:
        """Preemptive policies: evict the worst-ranked running request if it ranks worse than
        the waiting head. A request evicted in this iteration is not readmitted in it, and
        one admitted while promoted against starvation keeps its seat: were promotions to
        evict each other in turn, long prefills could be recomputed forever."""
        candidates = [r for r in self.running.values() if not r.protected]
        if not candidates:
            return False
        victim = max(candidates, key=lambda r: self._key_now(r, now))
        if self._key_now(victim, now) <= head.sort_key():
            return False
        del self.running[victim.id]
        for j, (r, _) in enumerate(items):
            if r is victim:  # already in this batch: it leaves it
                del items[j]
                break
        self._preempt(victim, now)
        preempted.append(victim)
        return True

    def _preempt(self, req: Request, now: float) -> None:
        """Recompute preemption: drop its KV; it re-prefills prompt + emitted tokens later."""
        self.pool.free(req)
        req.discarded += req.computed
        req.computed = 0
        req.protected = False
        self.add(req, now)


def batch_shape(items: list[tuple[Request, int]]) -> IterationShape:
    chunks = []
    num_decodes = decode_context = num_sampled = num_tokens = 0
    for req, n in items:
        num_tokens += n
        done = req.computed + n
        if done == req.num_tokens:
            num_sampled += 1
        if n == 1 and req.emitted > 0 and done == req.num_tokens:  # feeds its last sampled token
            num_decodes += 1
            decode_context += done
        else:
            chunks.append((n, req.computed))
    return IterationShape(num_tokens, len(items), tuple(chunks), num_decodes, decode_context,
                          num_sampled)
