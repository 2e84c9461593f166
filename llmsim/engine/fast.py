"""The fast engine: the reference engine's semantics without per-token Python work.

Most iterations of a busy replica look alike: every running request decodes one token,
nothing is preempted, nobody new fits. Such decoders advance in lockstep, so they are kept
as an aggregate (how many, their summed context, how many cross a KV block boundary at
each step, when each will finish) and an iteration costs O(1) plus O(1) per request that
joins, leaves, or is still prefilling. Iterations in which the aggregate cannot promise
what the reference would do (the running set's demand exceeds the token budget, or its
block demand exceeds the free pool, so order and preemption matter) are handed to the
reference scheduler itself after the decoders' state is written back to each request.

No SimPy either: the cluster advances each replica up to the next arrival instant, then
routes the arrivals, in the order `clock.py` fixes for simultaneous events. Results are
identical to `engine.cluster.Cluster` (see tests/test_engine_differential.py).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np

from ..traces.workload import Workload
from .cluster import Cluster
from .cost import CostModel, IterationShape
from .records import Records
from .replica import LIVELOCK
from .request import Request, State
from .scheduler import Batch, Scheduler, batch_shape


class FastReplica:
    def __init__(self, index: int, scheduler: Scheduler, cost: CostModel, records: Records,
                 on_finish: Callable[[Request], None], max_iterations: int) -> None:
        self.index = index
        self.sched = scheduler
        self.pool = scheduler.pool
        self.cost = cost
        self.records = records
        self.on_finish = on_finish
        self.now = 0.0  # the replica's clock: its last iteration end, or when it woke
        self.end: float | None = None  # end of the iteration in flight
        self.batch: Batch | None = None  # in-flight iteration run by the reference scheduler
        self.fast_items: list[tuple[Request, int]] = []  # in-flight non-decoder items
        self.outstanding_tokens = 0
        self.iterations = 0
        self.max_iterations = max_iterations
        self.exact_iterations = 0  # decided by the reference scheduler
        self.batched_seqs = 0
        self.busy_time = 0.0
        self.block_seconds = 0.0
        # The lockstep decoders. A decoder's true progress is its stored computed/emitted
        # plus (tick - req.tick); `tick` counts iterations in which all decoders advanced.
        self.tick = 0
        self.decoders: dict[int, Request] = {}
        self.base_sum = 0  # sum of (computed - tick) over decoders
        bs = self.pool.block_size
        self.phase = [0] * bs  # decoders by (computed - tick) mod block_size
        self.done: list[tuple[int, int, Request]] = []  # heap of (tick it finishes at, id, req)
        self.prefilling: list[Request] = []  # running non-decoders, in running order
        self.stale: list[Request] = []  # decoders whose last token is not at `last_end`
        self.last_end = 0.0

    # -- the cluster's view ----------------------------------------------------------

    def can_accept(self, req: Request) -> bool:
        return self.sched.can_accept(req)

    def add(self, req: Request, now: float) -> None:
        self.records.replica[req.id] = self.index
        self.outstanding_tokens += req.prompt_tokens
        self.sched.add(req, now)
        if self.end is None and now > self.now:
            self.now = now  # an idle replica wakes up

    def advance(self, until: float) -> None:
        """Run iterations until the next one would end after `until`; one ending exactly at
        `until` is completed but the next is not started (arrivals at `until` come first)."""
        while True:
            if self.end is not None:
                if self.end > until:
                    return
                self._complete()
                if self.now >= until:
                    return
            if not self.sched.has_work():
                return
            self._start()

    # -- one iteration ---------------------------------------------------------------

    def _start(self) -> None:
        sched, pool = self.sched, self.pool
        sched.begin_iteration()
        if sched.policy.preemptive and sched.has_waiting():
            return self._start_exact()  # evictions rank running requests by their progress
        budget = sched.config.max_num_batched_tokens
        num_dec = len(self.decoders)
        decoder_need = self.phase[-self.tick % pool.block_size]
        need, demand = decoder_need, num_dec
        items = []
        for req in self.prefilling:
            n = req.num_tokens - req.computed
            demand += n
            need += pool.missing(req, n)
            items.append((req, n))
        if demand > budget or need > pool.free_blocks:
            return self._start_exact()
        pool.take(decoder_need)
        for req, n in items:
            pool.append(req, n)
        if sched.waiting:
            admitted_from = len(items)
            sched.admit(items, budget - demand, self.now, [])
            first = self.records.first_scheduled
            for req, _ in items[admitted_from:]:
                self.prefilling.append(req)
                if first[req.id] != first[req.id]:  # NaN: never scheduled before
                    first[req.id] = self.now
        ctx = self.base_sum + num_dec * (self.tick + 1)  # decoders' KV after this token
        shape = IterationShape(num_dec, num_dec, (), num_dec, ctx, num_dec)
        if items:
            s = batch_shape(items)
            shape = IterationShape(s.num_tokens + num_dec, s.num_seqs + num_dec, s.prefill_chunks,
                                   s.num_decodes + num_dec, s.decode_context + ctx,
                                   s.num_sampled + num_dec)
        self.fast_items = items
        self._run(shape)

    def _start_exact(self) -> None:
        """Write the decoders back into their requests and let the reference scheduler
        decide this iteration (order, chunking and preemption matter here)."""
        self._sync_decoders()
        self.exact_iterations += 1
        batch = self.sched.plan(self.now)
        rec = self.records
        for req in batch.preempted:
            rec.preemptions[req.id] += 1
        if batch.shape is None:
            self._regroup()
            return  # every candidate preempted itself; the next iteration starts at once
        first = rec.first_scheduled
        for req, _ in batch.items:
            if first[req.id] != first[req.id]:
                first[req.id] = self.now
        self.batch = batch
        self._run(batch.shape)

    def _run(self, shape: IterationShape) -> None:
        dt = self.cost.iteration_time(shape)
        assert dt > 0, f"cost model returned {dt} for {shape}"
        self.iterations += 1
        if self.iterations > self.max_iterations:
            raise RuntimeError(LIVELOCK)
        self.batched_seqs += shape.num_seqs
        self.busy_time += dt
        self.block_seconds += self.pool.used_blocks * dt
        self.end = self.now + dt

    def _complete(self) -> None:
        end, prev_end = self.end, self.last_end
        self.end = None
        self.now = self.last_end = end
        if self.batch is not None:
            self._complete_exact(end)
        else:
            self._complete_fast(end, prev_end)

    def _complete_fast(self, end: float, prev_end: float) -> None:
        rec, itl = self.records, self.records.itl
        num_dec = len(self.decoders)
        self.tick += 1
        if num_dec:
            lockstep = num_dec - len(self.stale)
            if lockstep:
                itl.add(end - prev_end, lockstep)
            for req in self.stale:
                itl.add(end - req.last_token_at)
            self.stale.clear()
            self.outstanding_tokens += num_dec
        joined = []
        for req, n in self.fast_items:
            req.computed += n
            if req.computed < req.num_tokens:
                continue
            req.emitted += 1
            self.outstanding_tokens += 1
            rec.token(req, end)
            if req.emitted == req.output_tokens:
                self.pool.free(req)
                self.prefilling.remove(req)
                del self.sched.running[req.id]
                self._finish(req, end)
            else:
                joined.append(req)
        self.fast_items = []
        for req in joined:
            self.prefilling.remove(req)
            self._join(req)
        done = self.done
        while done and done[0][0] == self.tick:
            req = heapq.heappop(done)[2]
            self._leave(req)
            assert req.emitted == req.output_tokens
            self.pool.free(req)
            del self.sched.running[req.id]
            self._finish(req, end)

    def _complete_exact(self, end: float) -> None:
        batch, self.batch = self.batch, None
        rec = self.records
        emitted, finished = self.sched.complete(batch, end)
        for req in emitted:
            rec.token(req, end)
        self.outstanding_tokens += len(emitted)
        for req in finished:
            self._finish(req, end)
        self._regroup()

    def _finish(self, req: Request, end: float) -> None:
        req.state = State.FINISHED
        self.records.finished(req, end)
        self.outstanding_tokens -= req.prompt_tokens + req.emitted
        self.on_finish(req)

    # -- the decoder aggregate -------------------------------------------------------

    def _join(self, req: Request) -> None:
        """Make a running request whose next feed is its last sampled token a decoder."""
        self.pool.unsettle(req)
        req.tick = self.tick
        base = req.computed - self.tick
        self.decoders[req.id] = req
        self.base_sum += base
        self.phase[base % self.pool.block_size] += 1
        heapq.heappush(self.done, (self.tick + req.output_tokens - req.emitted, req.id, req))

    def _leave(self, req: Request) -> None:
        """Take a decoder out of the aggregate with its true progress written back."""
        del self.decoders[req.id]
        k = self.tick - req.tick
        base = req.computed - req.tick
        self.base_sum -= base
        self.phase[base % self.pool.block_size] -= 1
        req.computed += k
        req.emitted += k
        req.tick = self.tick
        self.pool.settle(req)

    def _sync_decoders(self) -> None:
        """Dissolve the aggregate: every request holds its own progress and blocks again."""
        stale = {r.id for r in self.stale}
        for req in list(self.decoders.values()):
            self._leave(req)
            if req.id not in stale:
                req.last_token_at = self.last_end
        assert not self.decoders and self.base_sum == 0
        self.done.clear()
        self.stale.clear()

    def _regroup(self) -> None:
        """After a reference-scheduled iteration: rebuild the aggregate from the running set."""
        self.prefilling = []
        for req in self.sched.running.values():
            if req.emitted > 0 and req.computed == req.num_tokens - 1:
                self._join(req)
                if req.last_token_at != self.last_end:
                    self.stale.append(req)
            else:
                self.prefilling.append(req)

    def stats(self) -> dict:
        pool = self.pool
        return {"iterations": self.iterations, "exact_iterations": self.exact_iterations,
                "batched_seqs": self.batched_seqs, "busy_time_s": self.busy_time,
                "block_seconds": self.block_seconds, "num_gpu_blocks": pool.num_blocks,
                "free_blocks_at_end": pool.free_blocks,
                "waiting_at_end": int(self.sched.has_waiting()),
                "running_at_end": len(self.sched.running)}


class FastCluster(Cluster):
    """Drop-in for `engine.cluster.Cluster`: same inputs, same records, no SimPy."""

    def _replicas(self, cost: CostModel, max_iterations: int) -> list:
        return [FastReplica(i, sched, cost, self.records, self._count, max_iterations)
                for i, sched in enumerate(self.schedulers)]

    def run(self) -> Records:
        rec, replicas = self.records, self.replicas
        rows = _rows(self.workload, self.release)
        row = next(rows, None)
        while row is not None:
            t = row[1]
            for r in replicas:
                r.advance(t)
            while row is not None and row[1] == t:  # simultaneous arrivals in trace order
                i, _, arrival, prompt, output = row
                req = Request(i, arrival, prompt, output)
                replica = replicas[self.router(req, replicas)]
                if replica.can_accept(req):
                    replica.add(req, t)
                else:
                    req.state = State.REJECTED
                    rec.rejected[i] = True
                    self._count(req)
                row = next(rows, None)
        for r in replicas:
            r.advance(math.inf)
        self.check_done()
        return rec


def _rows(w: Workload, release: np.ndarray, chunk: int = 1 << 16):
    """(id, release, arrival, prompt tokens, output tokens) as Python scalars, converted a
    chunk at a time: whole-column lists would cost ~100 bytes per request."""
    for start in range(0, len(w), chunk):
        stop = start + chunk
        yield from zip(range(start, min(stop, len(w))), release[start:stop].tolist(),
                       w.arrival[start:stop].tolist(), w.prompt_tokens[start:stop].tolist(),
                       w.output_tokens[start:stop].tolist(), strict=True)
