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
pool; this file only decides how many requests and iterations it handles at once.

Between two events, a batch of decoders alone repeats the same step with every context
one token longer: nobody waits, nobody prefills, nobody is done, the pool does not run
dry. `_run_decodes` prices such a run at once (`cost.decode_times`, vectorised; a cost
model without it runs one iteration at a time), finds the last of its iterations that ends
by the next arrival, and applies them all in one go.

No SimPy either: the cluster advances each replica up to the next arrival instant, then
routes the arrivals, in the order `clock.py` fixes for simultaneous events. Results are
identical to the reference simulator's (tests/test_engine_differential.py).
"""

from __future__ import annotations

import math

import numpy as np

from .cluster import Cluster
from .cost import CostModel
from .decoders import DecoderAggregate
from .records import Records
from .replica import Replica
from .request import Request
from .scheduler import Batch, Scheduler, batch_shape

MIN_RUN = 4  # fewer decode iterations than this are cheaper to run one by one


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
        self.runs_at_once = hasattr(self.cost, "decode_times")  # see `_run_decodes`

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
            if self.runs_at_once and self.decoders.size and not self.prefilling \
                    and not self.stale and not self.sched.waiting.heap:
                self._run_decodes(until)
                if self.now >= until:
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

    def _run_decodes(self, until: float) -> None:
        """Run at once the decode-only iterations that end by `until` before any event: the
        replica holds decoders only and nobody waits, so each iteration of the run feeds
        every decoder one token, admits nobody and preempts nobody, as long as no decoder
        is done (that iteration is left to `_start`) and the blocks they need as they
        cross block boundaries are free. Every figure the step-by-step loop would record is
        recorded; the iteration ends are the same floats (a sequential sum)."""
        dec, sched = self.decoders, self.sched
        n = dec.size
        if n > sched.config.max_num_batched_tokens:
            return  # the budget cannot feed them all: plan decides who goes
        k = min(dec.steps_to_next_finish() - 1, self.max_iterations - self.iterations)
        if k < MIN_RUN:
            return
        if until != math.inf:
            # Price no more than can end by `until`, judging by the last iteration: decode
            # iterations only get longer as contexts grow (a wrong guess costs time, never
            # correctness: only iterations that do end by `until` are applied).
            k = min(k, int((until - self.now) / self.last_dt) + 1)
            if k < MIN_RUN:
                return
        needs = np.cumsum(dec.block_needs(k))
        k = min(k, int(np.searchsorted(needs, self.pool.free_blocks, side="right")))
        if k < 1:
            return
        times = self.cost.decode_times(n, dec.contexts(k))
        ends = np.cumsum(np.concatenate(([self.now], times)))[1:]
        m = int(np.searchsorted(ends, until, side="right"))  # iterations that end by `until`
        if m < 1:
            return
        times, ends, needs = times[:m], ends[:m], needs[:m]
        assert (times > 0).all(), f"cost model returned {times.min()} for {n} decodes"
        sched.iteration += m
        sched.waiting.promote(sched.iteration)  # nobody waits: only promotions end
        used = self.pool.used_blocks + needs  # blocks are taken when an iteration starts
        self.pool.take(int(needs[-1]))
        self.iterations += m
        self.batched_seqs += n * m
        self.busy_time += float(times.sum())
        self.block_seconds += float(used @ times)
        self.records.itl.add_many(np.diff(ends, prepend=self.last_end), n)
        self.outstanding_tokens += n * m
        dec.skip(m)
        self.now = self.last_end = float(ends[-1])
        self.last_dt = float(times[-1])

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
