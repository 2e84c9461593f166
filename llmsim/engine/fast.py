"""The fast simulator: the reference simulator's decisions without per-token Python work.

Most iterations of a busy replica look alike: every running request decodes one token,
nothing is preempted, nobody new fits. The fast simulator keeps such decoders as one
`DecoderAggregate` (decoders.py) and asks the scheduler to plan the iteration as a whole
(`Scheduler.plan_whole`): when the running set's demand fits the token budget and the free
blocks, that is exactly what the scheduler would decide request by request, at O(1) per
iteration plus O(1) per request that joins, leaves or is still prefilling. Otherwise
order, chunking and preemption matter: the aggregate is dissolved (each request gets its
progress back) and the scheduler plans the iteration request by request (`plan`), as the
reference does. Every scheduling rule lives in the scheduler, the request and the block
pool; this file only decides how many requests it handles at once.

No SimPy either: the cluster advances each replica up to the next arrival instant, then
routes the arrivals, in the order `clock.py` fixes for simultaneous events. Results are
identical to the reference simulator's (tests/test_engine_differential.py).
"""

from __future__ import annotations

import math

from .cluster import Cluster
from .cost import CostModel
from .decoders import DecoderAggregate
from .records import Records
from .replica import Replica
from .request import Request
from .scheduler import Batch, Scheduler, batch_shape


class FastReplica(Replica):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.now = 0.0  # the replica's clock: its last iteration end, or when it woke
        self.end: float | None = None  # end of the iteration in flight
        self.batch: Batch | None = None  # in-flight iteration planned request by request
        self.items: list[tuple[Request, int]] = []  # in-flight iteration planned whole: its
        # requests outside the aggregate
        self.ordered_iterations = 0  # planned request by request
        self.decoders = DecoderAggregate(self.pool)
        self.prefilling: list[Request] = []  # running requests outside the aggregate, in order
        self.stale: list[Request] = []  # members whose last token is not at `last_end`
        self.last_end = 0.0

    def add(self, req: Request, now: float) -> None:
        super().add(req, now)
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
        sched, dec = self.sched, self.decoders
        sched.begin_iteration()
        items = sched.plan_whole(self.prefilling, dec.size, dec.blocks_needed(), self.now)
        if items is None:
            return self._start_ordered()
        if len(items) > len(self.prefilling):
            admitted = items[len(self.prefilling):]
            self.prefilling.extend(req for req, _ in admitted)
            self.scheduled(admitted, self.now)
        self.items = items
        shape = batch_shape(items, dec.size, dec.context_after_step())
        self.end = self.now + self.price(shape)

    def _start_ordered(self) -> None:
        """Dissolve the aggregate and let the scheduler plan this iteration request by
        request (order, chunking and preemption matter here)."""
        self._dissolve()
        self.ordered_iterations += 1
        batch = self.sched.plan(self.now)
        self.started(batch, self.now)
        if batch.shape is None:
            self._regroup()
            return  # every candidate preempted itself; the next iteration starts at once
        self.batch = batch
        self.end = self.now + self.price(batch.shape)

    def _complete(self) -> None:
        end, prev_end = self.end, self.last_end
        self.end = None
        self.now = self.last_end = end
        if self.batch is not None:
            batch, self.batch = self.batch, None
            self.complete(batch, end)
            self._regroup()
        else:
            self._complete_whole(end, prev_end)

    def _complete_whole(self, end: float, prev_end: float) -> None:
        dec, itl = self.decoders, self.records.itl
        if dec.size:
            lockstep = dec.size - len(self.stale)
            if lockstep:
                itl.add(end - prev_end, lockstep)
            for req in self.stale:
                itl.add(end - req.last_token_at)
            self.stale.clear()
            self.outstanding_tokens += dec.size
        done = dec.step()
        joined = []
        for req, n in self.items:
            if not req.feed(n):
                continue
            self.emitted(req, end)
            if req.done:
                self.prefilling.remove(req)
                self.sched.retire(req)
                self.finished(req, end)
            else:
                joined.append(req)
        self.items = []
        for req in joined:
            self.prefilling.remove(req)
            dec.join(req)
        for req in done:
            self.sched.retire(req)
            self.finished(req, end)

    # -- the aggregate ----------------------------------------------------------------

    def _dissolve(self) -> None:
        """Every request holds its own progress and blocks again."""
        stale = {r.id for r in self.stale}
        for req in self.decoders.dissolve():
            if req.id not in stale:
                req.last_token_at = self.last_end
        self.stale.clear()

    def _regroup(self) -> None:
        """After an iteration planned request by request: rebuild the aggregate."""
        self.prefilling = []
        for req in self.sched.running.values():
            if req.is_decoding:
                self.decoders.join(req)
                if req.last_token_at != self.last_end:
                    self.stale.append(req)
            else:
                self.prefilling.append(req)

    def stats(self) -> dict:
        return {**super().stats(), "ordered_iterations": self.ordered_iterations}


class FastCluster(Cluster):
    def make_replica(self, index: int, scheduler: Scheduler, cost: CostModel,
                     max_iterations: int) -> Replica:
        return FastReplica(index, scheduler, cost, self.records, self.count, max_iterations)

    def run(self) -> Records:
        replicas = self.replicas
        for t, rows in self.arrivals():
            for r in replicas:
                r.advance(t)
            for row in rows:  # simultaneous arrivals in trace order
                self.arrive(*row)
        for r in replicas:
            r.advance(math.inf)
        self.check_done()
        return self.records
