"""The reference simulator: SimPy processes, one step per iteration, every request fed one
by one through `Scheduler.schedule` and `Scheduler.complete`. Small and obviously right;
the fast simulator must match it exactly (tests/test_engine_differential.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy

from ..traces.workload import Workload
from .clock import ARRIVAL, ITERATION_END, ITERATION_START, Clock
from .cluster import Cluster
from .config import EngineConfig
from .cost import CostModel
from .policy import Policy
from .records import Records
from .replica import Replica
from .request import Request
from .router import Router
from .scheduler import Scheduler


class ReferenceReplica(Replica):
    """A replica as a SimPy process: iterations back to back while it has work."""

    def __init__(self, env: Clock, index: int, scheduler: Scheduler, cost: CostModel,
                 records: Records, on_finish: Callable[[Request], None],
                 max_iterations: int) -> None:
        super().__init__(index, scheduler, cost, records, on_finish, max_iterations)
        self.env = env
        self._idle: simpy.Event | None = None
        self.process = env.process(self._run())

    def add(self, req: Request, now: float) -> None:
        super().add(req, now)
        if self._idle is not None:
            self._idle.succeed()
            self._idle = None

    def _run(self):
        env, sched = self.env, self.sched
        while True:
            if not sched.has_work():
                self._idle = env.event()
                yield self._idle
            yield env.at(env.now, ITERATION_START)
            now = env.now
            batch = sched.schedule(now)
            self.started(batch, now)
            if batch.shape is None:
                continue  # every candidate preempted itself; vLLM runs no forward pass
            dt = self.price(batch.shape)
            yield env.at(now + dt, ITERATION_END)
            self.complete(batch, env.now)


class ReferenceCluster(Cluster):
    def __init__(self, workload: Workload, policy: Policy, cost: CostModel,
                 engine: EngineConfig, num_gpu_blocks: int, router: Router,
                 num_replicas: int = 1, progress: Callable[[int], None] | None = None,
                 release: np.ndarray | None = None) -> None:
        self.env = Clock()  # before the replicas, which run on it
        self.env.process(self._arrivals())  # started when the clock runs
        super().__init__(workload, policy, cost, engine, num_gpu_blocks, router, num_replicas,
                         progress, release)

    def make_replica(self, index: int, scheduler: Scheduler, cost: CostModel,
                     max_iterations: int) -> Replica:
        return ReferenceReplica(self.env, index, scheduler, cost, self.records, self.count,
                                max_iterations)

    def run(self) -> Records:
        self.env.run()
        self.check_done()
        return self.records

    def _arrivals(self):
        for t, rows in self.arrivals():
            yield self.env.at(t, ARRIVAL)
            for row in rows:  # simultaneous arrivals in trace order, at once
                self.arrive(*row)
