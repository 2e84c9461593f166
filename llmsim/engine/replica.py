"""One engine replica: its scheduler, its cost model, and the bookkeeping every simulator
shares. The simulators (`reference.py`, `fast.py`) differ only in how they advance time.

A replica takes requests from the router (`add`), prices each iteration it runs (`price`:
the cost model, and the counters behind the run's mean batch, busy fraction and KV
utilisation), and records what each iteration did (`started`, `emitted`, `finished`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from .cost import CostModel, IterationShape
from .prefix_cache import CachingBlockPool
from .records import Records
from .request import Request
from .scheduler import Batch, Scheduler

LIVELOCK = ("the simulation stopped making progress (more iterations than any run of this "
            "workload can need): a policy keeps preempting work it then recomputes")


def iteration_limit(workload) -> int:
    """A bound no live run reaches: every iteration feeds at least one token, and a run that
    recomputes each request's tokens a hundred times is already pathological."""
    return 100 * int(workload.prompt_tokens.sum() + workload.output_tokens.sum()) + 10_000


class Replica:
    def __init__(self, index: int, scheduler: Scheduler, cost: CostModel, records: Records,
                 on_finish: Callable[[Request], None], max_iterations: int) -> None:
        self.index = index
        self.sched = scheduler
        self.pool = scheduler.pool
        self.peeks = self.pool.caching and scheduler.policy.cache_aware
        self.cost = cost
        self.records = records
        self.on_finish = on_finish  # called with each finished request
        self.max_iterations = max_iterations
        self.outstanding_tokens = 0  # prompt + emitted tokens of its unfinished requests
        self.iterations = 0
        self.batched_seqs = 0  # summed over iterations, for the mean batch size
        self.busy_time = 0.0
        self.block_seconds = 0.0  # used KV blocks x iteration time, for mean utilisation

    def can_accept(self, req: Request) -> bool:
        return self.pool.fits_ever(req)  # Scheduler.can_accept, one call fewer per request

    def add(self, req: Request, now: float) -> None:
        self.records.replica[req.id] = self.index
        self.outstanding_tokens += req.prompt_tokens
        if self.peeks:  # for cache-aware policies: what it would find cached now
            req.cached_hint = self.pool.peek(req)
        self.sched.add(req, now)

    def started(self, batch: Batch, now: float) -> None:
        """Record an iteration's preemptions and the requests it schedules for the first time."""
        rec = self.records
        for req in batch.preempted:
            rec.preemptions[req.id] += 1
        self.scheduled(batch.items, now)

    def scheduled(self, items: list[tuple[Request, int]], now: float) -> None:
        first = self.records.first_scheduled
        for req, _ in items:
            if first[req.id] != first[req.id]:  # NaN: never scheduled before
                first[req.id] = now

    def price(self, shape: IterationShape) -> float:
        """The iteration's time from the cost model, counted into the replica's totals."""
        return self.account(shape.num_seqs, self.cost.iteration_time(shape))

    def account(self, num_seqs: int, dt: float) -> float:
        """Count an iteration of `num_seqs` sequences taking `dt` into the replica's totals
        (the pool as it is once the iteration has its blocks)."""
        assert dt > 0, f"cost model returned {dt} for {num_seqs} sequences"
        self.iterations += 1
        if self.iterations > self.max_iterations:
            raise RuntimeError(LIVELOCK)
        self.batched_seqs += num_seqs
        self.busy_time += dt
        pool = self.pool
        self.block_seconds += (pool.num_blocks - pool.free_blocks) * dt  # used blocks
        return dt

    def complete(self, batch: Batch, now: float) -> None:
        """Apply an iteration planned request by request, which ended at `now`."""
        emitted, finished = self.sched.complete(batch, now)
        for req in emitted:
            self.emitted(req, now)
        for req in finished:
            self.finished(req, now)

    def emitted(self, req: Request, now: float) -> None:
        self.records.token(req, now)
        self.outstanding_tokens += 1

    def finished(self, req: Request, now: float) -> None:
        self.records.finished(req, now)
        self.outstanding_tokens -= req.prompt_tokens + req.emitted
        assert self.outstanding_tokens >= 0
        self.on_finish(req)

    def stats(self) -> dict:
        pool = self.pool
        stats = {"iterations": self.iterations, "batched_seqs": self.batched_seqs,
                 "busy_time_s": self.busy_time, "block_seconds": self.block_seconds,
                 "num_gpu_blocks": pool.num_blocks, "free_blocks_at_end": pool.free_blocks,
                 "waiting_at_end": int(bool(self.sched.waiting)),
                 "running_at_end": len(self.sched.running)}
        if pool.caching:
            cache = cast(CachingBlockPool, pool)
            stats.update(prefix_hit_tokens=cache.hit_tokens, prefix_evictions=cache.evictions)
        return stats
