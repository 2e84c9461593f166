"""N replicas behind a router, fed by the workload's arrivals: one simulated deployment.

`Cluster` holds what every simulator shares: the records, the router, the replicas and
their schedulers, and what happens to an arriving request (routed; admitted to its
replica's waiting queue, or rejected if it could never fit that replica's KV pool). The
simulators say how time advances: `reference.py` with SimPy, one step per iteration;
`fast.py` with a plain event loop and lockstep decoders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..traces.workload import Workload
from .blocks import BlockPool
from .config import EngineConfig
from .cost import CostModel
from .policy import Policy
from .prefix_cache import CachingBlockPool
from .prefix_keys import PrefixKeys
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
        limit = iteration_limit(workload)
        # prefix caching: the trace's block ids, made the engine's keys as requests arrive
        hashes = workload.meta.get("hash_ids") if engine.enable_prefix_caching else None
        if hashes is not None and len(hashes) != len(workload):
            raise ValueError(f"the workload's hash_ids cover {len(hashes)} requests, it has "
                             f"{len(workload)}: select rows with Workload.select")
        self.keys: PrefixKeys | None = (hashes.engine_keys(engine.block_size)
                                        if hashes is not None else None)
        # every request before `watermark` has left for good: a key no request left can look
        # up waits for its request's `free`, as one nobody else has (PrefixKeys.private_from)
        self.gone = bytearray(len(workload) if self.keys is not None else 0)
        self.watermark = 0
        self.replicas = [
            self.make_replica(i, Scheduler(engine, self.new_pool(engine, num_gpu_blocks),
                                           policy), cost, limit)
            for i in range(num_replicas)]

    def new_pool(self, engine: EngineConfig, num_gpu_blocks: int) -> BlockPool:
        """A replica's KV pool; with caching, its key map made for the workload's keys
        (`PrefixKeys.end`), so that no key makes it grow."""
        if not engine.enable_prefix_caching:
            return BlockPool(num_gpu_blocks, engine.block_size)
        end = self.keys.end if self.keys is not None else 0
        return CachingBlockPool(num_gpu_blocks, engine.block_size, keys=end)

    def make_replica(self, index: int, scheduler: Scheduler, cost: CostModel,
                     max_iterations: int) -> Replica:
        raise NotImplementedError

    def run(self) -> Records:
        """Simulate every request to its end; the records are complete."""
        raise NotImplementedError

    def arrive(self, i: int, release: float, arrival: float, prompt: int, output: int) -> None:
        """Request `i` reaches the router at `release` (its arrival, or later if a ranker
        scored it first)."""
        req = Request(i, arrival, prompt, output)
        keys = self.keys
        if keys is not None:
            req.block_hashes = keys.keys(i, prompt, output)
            req.private_from = keys.private_from(i, self.watermark)
            req.keys_checked = True
        replicas = self.replicas
        replica = replicas[self.router(req, replicas)] if len(replicas) > 1 else replicas[0]
        if replica.can_accept(req):
            replica.add(req, release)
        else:  # could never fit in the KV pool: vLLM would refuse it too
            req.state = State.REJECTED
            self.records.rejected[i] = True
            self.count(req)

    def count(self, req: Request) -> None:
        """A request left the system (finished or rejected)."""
        self.done += 1
        if self.keys is not None:
            gone, n = self.gone, len(self.gone)
            gone[req.id] = 1
            while self.watermark < n and gone[self.watermark]:
                self.watermark += 1
        if self.progress is not None:
            self.progress(self.done)

    def check_done(self) -> None:
        for r in self.replicas:
            assert not r.sched.has_work(), "simulation ended with work left"
            assert r.pool.free_blocks == r.pool.num_blocks, "KV blocks leaked"

    def rows(self, chunk: int = 1 << 16) -> Iterator[tuple]:
        """`arrive`'s arguments per request, (id, release, arrival, prompt tokens, output
        tokens) as Python scalars, in release order (ties in trace order)."""
        w, release = self.workload, self.release
        for start in range(0, len(w), chunk):
            stop = start + chunk
            yield from zip(range(start, min(stop, len(w))), release[start:stop].tolist(),
                           w.arrival[start:stop].tolist(), w.prompt_tokens[start:stop].tolist(),
                           w.output_tokens[start:stop].tolist(), strict=True)

    def arrivals(self, chunk: int = 1 << 16) -> Iterator[tuple[float, list[tuple]]]:
        """(release time, rows released then) in time order, simultaneous rows in trace
        order; a row is `arrive`'s arguments. Columns become Python scalars a chunk at a
        time: whole-column lists would cost ~100 bytes per request."""
        group: list[tuple] = []
        for row in self.rows(chunk):
            if group and row[1] != group[0][1]:
                yield group[0][1], group
                group = []
            group.append(row)
        if group:
            yield group[0][1], group

