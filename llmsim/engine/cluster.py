"""N replicas behind a router, fed by the workload's arrivals: one simulated deployment."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..policies.policy import Policy
from ..traces.workload import Workload
from .blocks import BlockPool
from .clock import ARRIVAL, Clock
from .config import EngineConfig
from .cost import CostModel
from .records import Records
from .replica import Replica, iteration_limit
from .request import Request, State
from .router import Router
from .scheduler import Scheduler


class Cluster:
    def __init__(self, workload: Workload, policy: Policy, cost: CostModel, engine: EngineConfig,
                 num_gpu_blocks: int, router: Router, num_replicas: int = 1,
                 progress: Callable[[int], None] | None = None,
                 release: np.ndarray | None = None) -> None:
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        self.workload = workload
        self.release = workload.arrival if release is None else release  # when the engine sees it
        self.records = Records(workload.arrival, workload.prompt_tokens, workload.output_tokens)
        self.router = router
        self.progress = progress
        self.done = 0  # finished + rejected
        self.schedulers = [Scheduler(engine, BlockPool(num_gpu_blocks, engine.block_size), policy)
                           for _ in range(num_replicas)]
        self.replicas = self._replicas(cost, iteration_limit(workload))

    def _replicas(self, cost: CostModel, max_iterations: int) -> list:
        self.env = Clock()
        self.env.process(self._arrivals())
        return [Replica(i, self.env, sched, cost, self.records, on_finish=self._count,
                        max_iterations=max_iterations)
                for i, sched in enumerate(self.schedulers)]

    def run(self) -> Records:
        self.env.run()
        self.check_done()
        return self.records

    def check_done(self) -> None:
        for sched in self.schedulers:
            assert not sched.has_work(), "simulation ended with work left"
            assert sched.pool.free_blocks == sched.pool.num_blocks, "KV blocks leaked"

    def _count(self, req: Request) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done)

    def _arrivals(self):
        w, env = self.workload, self.env
        arrival = w.arrival.tolist()
        release = self.release.tolist()
        prompt = w.prompt_tokens.tolist()
        output = w.output_tokens.tolist()
        n, i = len(arrival), 0
        while i < n:
            yield env.at(release[i], ARRIVAL)
            t = release[i]
            while i < n and release[i] == t:  # simultaneous arrivals in trace order, at once
                req = Request(i, arrival[i], prompt[i], output[i])
                replica = self.replicas[self.router(req, self.replicas)]
                if replica.can_accept(req):
                    replica.add(req)
                else:  # could never fit in the KV pool: vLLM would refuse it too
                    req.state = State.REJECTED
                    self.records.rejected[i] = True
                    self._count(req)
                i += 1
