"""One engine replica as a SimPy process: iterations back to back while it has work."""

from __future__ import annotations

import simpy

from .clock import ITERATION_END, ITERATION_START, Clock
from .cost import CostModel
from .records import Records
from .request import Request
from .scheduler import Scheduler

LIVELOCK = ("the simulation stopped making progress (more iterations than any run of this "
            "workload can need): a policy keeps preempting work it then recomputes")


def iteration_limit(workload) -> int:
    """A bound no live run reaches: every iteration feeds at least one token, and a run that
    recomputes each request's tokens a hundred times is already pathological."""
    return 100 * int(workload.prompt_tokens.sum() + workload.output_tokens.sum()) + 10_000


class Replica:
    def __init__(self, index: int, env: Clock, scheduler: Scheduler,
                 cost: CostModel, records: Records, on_finish=None,
                 max_iterations: int = 10**12) -> None:
        self.index = index
        self.env = env
        self.scheduler = scheduler
        self.cost = cost
        self.records = records
        self.on_finish = on_finish  # called with each finished request
        self.outstanding_tokens = 0  # prompt + emitted tokens of its unfinished requests
        self.iterations = 0
        self.max_iterations = max_iterations
        self.batched_seqs = 0  # summed over iterations, for the mean batch size
        self.busy_time = 0.0
        self.block_seconds = 0.0  # used KV blocks x iteration time, for mean utilisation
        self._idle: simpy.Event | None = None
        self.process = env.process(self._run())

    def can_accept(self, req: Request) -> bool:
        return self.scheduler.can_accept(req)

    def add(self, req: Request) -> None:
        self.records.replica[req.id] = self.index
        self.outstanding_tokens += req.prompt_tokens
        self.scheduler.add(req, self.env.now)
        if self._idle is not None:
            self._idle.succeed()
            self._idle = None

    def _run(self):
        env, sched, rec = self.env, self.scheduler, self.records
        while True:
            if not sched.has_work():
                self._idle = env.event()
                yield self._idle
            yield env.at(env.now, ITERATION_START)
            now = env.now
            batch = sched.schedule(now)
            for req in batch.preempted:
                rec.preemptions[req.id] += 1
            if batch.shape is None:
                continue  # every candidate preempted itself; vLLM runs no forward pass
            for req, _ in batch.items:
                if rec.first_scheduled[req.id] != rec.first_scheduled[req.id]:  # NaN
                    rec.first_scheduled[req.id] = now
            dt = self.cost.iteration_time(batch.shape)
            assert dt > 0, f"cost model returned {dt} for {batch.shape}"
            self.iterations += 1
            if self.iterations > self.max_iterations:
                raise RuntimeError(LIVELOCK)
            self.batched_seqs += batch.shape.num_seqs
            self.busy_time += dt
            self.block_seconds += sched.pool.used_blocks * dt
            yield env.at(now + dt, ITERATION_END)
            now = env.now
            emitted, finished = sched.complete(batch, now)
            for req in emitted:
                rec.token(req, now)
            self.outstanding_tokens += len(emitted)
            for req in finished:
                rec.finished(req, now)
                self.outstanding_tokens -= req.prompt_tokens + req.emitted
                if self.on_finish is not None:
                    self.on_finish(req)
            assert self.outstanding_tokens >= 0

    def stats(self) -> dict:
        pool = self.scheduler.pool
        return {"iterations": self.iterations, "batched_seqs": self.batched_seqs,
                "busy_time_s": self.busy_time, "block_seconds": self.block_seconds,
                "num_gpu_blocks": pool.num_blocks, "free_blocks_at_end": pool.free_blocks,
                "waiting_at_end": int(self.scheduler.has_waiting()),
                "running_at_end": len(self.scheduler.running)}
