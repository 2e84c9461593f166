"""The per-iteration scheduler of one replica, after vLLM V1's `Scheduler.schedule()`.

`schedule` picks the batch of one iteration and applies its KV allocations and
preemptions; `complete` applies the iteration's outcome (tokens emitted, requests done).
The order of decisions mirrors vLLM: running requests first, in running order, each
taking its next chunk and preempting victims when the pool is dry; then, only if nothing
was preempted, waiting requests in policy order while budget, seats and blocks last.
"""

from __future__ import annotations

from typing import NamedTuple, cast

from .blocks import BlockPool
from .config import EngineConfig
from .cost import IterationShape
from .policy import Policy
from .prefix_cache import CachingBlockPool
from .request import Request, State
from .waiting import WaitingQueue


class Batch(NamedTuple):
    items: list[tuple[Request, int]]  # (request, tokens fed this iteration), in batch order
    preempted: list[Request]
    shape: IterationShape | None  # None when nothing was scheduled


class Scheduler:
    def __init__(self, config: EngineConfig, pool: BlockPool, policy: Policy) -> None:
        self.config = config
        self.pool = pool
        self.policy = policy
        self.waiting = WaitingQueue(policy)
        self.running: dict[int, Request] = {}  # by id, in admission order
        self.iteration = 0
        self.seats = 0  # admissions so far
        self.caching = pool.caching  # prefix caching: admissions start from a cached prefix

    def has_work(self) -> bool:
        return bool(self.running) or bool(self.waiting)

    def begin_iteration(self) -> None:
        """Count the iteration; the waiting queue promotes starved requests (if the policy
        prevents starvation)."""
        self.iteration += 1
        self.waiting.promote(self.iteration)

    def can_accept(self, req: Request) -> bool:
        return self.pool.fits_ever(req)

    def add(self, req: Request, now: float) -> None:
        """`req` waits for a seat; the caller checked `can_accept(req)`."""
        self.waiting.add(req, now, self.iteration)

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
            n = req.chunk(budget)
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

    def plan_whole(self, prefilling: list[Request], decoders: int, decoder_blocks: int,
                   now: float) -> list[tuple[Request, int]] | None:
        """`plan` when the whole running set fits: `decoders` requests decoding one token each
        (needing `decoder_blocks` new blocks between them) and the `prefilling` ones, each
        wanting its `chunk`. The prefilling ones come after every decoder in running order:
        a request is admitted only with budget left once every running request got all it
        wanted, so whoever was seated before it had its whole prompt computed by then. So
        `plan` feeds the decoders a token each, then the prefilling ones their chunks in
        order, the last one served cut to the budget left (a long prompt's chunk takes what
        the decoders leave), then admits with any budget left. This does exactly that
        without walking the running set in order, and returns the prefilling and admitted
        requests' items (the decoders' blocks are taken as one count). Returns None,
        changing nothing, when the decoders alone exceed the budget, the blocks do not
        suffice, or admission may evict (a preemptive policy with requests waiting ranks
        running requests by their progress): then `plan` decides, request by request."""
        if self.policy.preemptive and self.waiting:
            return None
        budget = self.config.max_num_batched_tokens
        demand, need = decoders, decoder_blocks
        items = []
        for req in prefilling:
            n = req.chunk(budget)
            demand += n
            need += self.pool.missing(req, n)
            items.append((req, n))
        if demand > budget:  # the budget runs out among the prefilling ones
            if decoders > budget:
                return None
            demand, need, items = budget, decoder_blocks, []
            left = budget - decoders
            for req in prefilling:
                if not left:
                    break
                n = req.chunk(left)
                need += self.pool.missing(req, n)
                items.append((req, n))
                left -= n
        if need > self.pool.free_blocks:
            return None
        self.pool.take(decoder_blocks)
        for req, n in items:
            self.pool.append(req, n)
        if self.waiting.heap and demand < budget:  # most iterations admit nobody
            self.admit(items, budget - demand, now, [])
        return items

    def admit(self, items: list[tuple[Request, int]], budget: int, now: float,
              preempted: list[Request]) -> int:
        """Admit waiting requests in policy order while budget, seats and blocks last;
        returns the budget left. The head of the queue blocks those behind it, unless the
        policy is preemptive and a running request ranks worse: that one is evicted."""
        while budget > 0:
            req = self.waiting.head()
            if req is None or req in preempted:  # evicted in this iteration: not back
                break  # before the next
            fits = len(self.running) < self.config.max_num_seqs  # a seat is free
            if fits and self.caching and not self.pool.anonymous:  # else nothing can hit
                fits = not cast(CachingBlockPool, self.pool).blocked(req)
                if fits:
                    req.computed = self.pool.hit(req)  # its cached prefix
            n = req.chunk(budget)
            if not fits or not self.pool.can_allocate(req, n):
                req.computed = 0
                if self.policy.preemptive and self._evict_for(req, now, items, preempted):
                    budget = self.config.max_num_batched_tokens - sum(k for _, k in items)
                    continue
                break
            self.waiting.pop()
            self.pool.allocate(req, n)
            if req.cached < 0:
                req.cached = req.computed
            self.seats += 1
            req.seat = self.seats
            self.waiting.admitted(req, self.iteration)
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
            if not req.feed(n):
                continue
            emitted.append(req)
            if req.done:
                self.retire(req)
                finished.append(req)
        return emitted, finished

    def retire(self, req: Request) -> None:
        """A request that emitted its whole output leaves: its blocks are freed."""
        assert req.emitted == req.output_tokens  # done
        req.state = State.FINISHED
        self.pool.free(req)
        del self.running[req.id]

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


def batch_shape(items: list[tuple[Request, int]], decoders: int = 0,
                decoder_context: int = 0) -> IterationShape:
    """The cost model's view of a batch, before it runs: `items` fed one by one, plus
    `decoders` decoding requests kept as an aggregate whose contexts sum to
    `decoder_context` (the fast simulator's lockstep decoders)."""
    if not items:
        return IterationShape(decoders, decoders, (), decoders, decoder_context, decoders)
    chunks = []
    num_decodes, decode_context = decoders, decoder_context
    num_sampled = num_tokens = decoders
    for req, n in items:
        num_tokens += n
        done = req.computed + n
        if done == req.num_tokens:
            num_sampled += 1
        if req.is_decoding:
            num_decodes += 1
            decode_context += done
        else:
            chunks.append((n, req.computed))
    return IterationShape(num_tokens, len(items) + decoders, tuple(chunks), num_decodes,
                          decode_context, num_sampled)
