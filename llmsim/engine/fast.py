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
dry. `_run_decodes` runs such stretches up to the next arrival, decoders finishing on the
way, with none of the per-iteration machinery, pricing them in closed form where the cost
model allows (`cost.decode_affine`).

No SimPy either: the cluster advances each replica up to the next arrival instant, then
routes the arrivals, in the order `clock.py` fixes for simultaneous events. Results are
identical to the reference simulator's (tests/test_engine_differential.py).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import cast

from .cluster import Cluster
from .cost import CostModel, IterationShape
from .decoders import DecoderAggregate
from .records import Records
from .replica import Replica
from .request import Request
from .scheduler import Batch, Scheduler, batch_shape

try:  # `_affine_run` compiled (_runs.c): the same operations; optional (setup.py)
    from ._runs import affine_run as compiled_affine_run
except ImportError:
    compiled_affine_run = None


class FastReplica(Replica):
    def __init__(self, index: int, scheduler: Scheduler, cost: CostModel, records: Records,
                 on_finish: Callable[[Request], None], max_iterations: int) -> None:
        super().__init__(index, scheduler, cost, records, on_finish, max_iterations)
        self.now = 0.0  # the replica's clock: its last iteration end, or when it woke
        self.end: float | None = None  # end of the iteration in flight
        self.batch: Batch | None = None  # in-flight iteration planned request by request
        self.items: list[tuple[Request, int]] = []  # in-flight iteration planned whole: its
        # requests outside the aggregate
        self.ordered_iterations = 0  # planned request by request
        self.decode_runs = 0  # stretches of decode-only iterations run at once
        self.decoders = DecoderAggregate(self.pool)
        self.prefilling: list[Request] = []  # running requests outside the aggregate, in order
        self.stale: list[Request] = []  # members whose last token is not at `last_end`
        self.last_end = 0.0
        self.affine: dict[int, tuple[float, float, float] | None] = {}  # decode_affine by size
        self.itl_bin = [0, 0.0, -1.0]  # the ITL bin of the last decode run's gaps (its index,
        # edges [lo, hi)): the next run's gaps most likely fall in it too
        self.affine_run = compiled_affine_run or _affine_run

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
            if self.decoders.size and not self.prefilling and not self.stale \
                    and (not self.sched.waiting.heap or self._head_stays_blocked()):
                self._run_decodes(until)
                if self.end is not None or self.now >= until:
                    return  # in flight past `until`, or the last one ended at it
                if not self.sched.has_work():
                    return
            self._start()

    # -- one iteration ---------------------------------------------------------------

    def _start(self) -> None:
        sched, dec = self.sched, self.decoders
        sched.begin_iteration()
        dec.ahead = 1  # if planned whole, the members' tokens are scheduled from here on
        prefilling = self.prefilling
        assert not prefilling or prefilling[0].seat > dec.last_seat, "see plan_whole"
        items = sched.plan_whole(prefilling, dec.size, dec.blocks_needed(), self.now)
        if items is None:
            dec.ahead = 0
            return self._start_ordered()
        if len(items) > len(prefilling):
            admitted = items[len(prefilling):]
            prefilling.extend(req for req, _ in admitted)
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
        assert end is not None
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
                done.append(req)
            else:
                joined.append(req)
        self.items = []
        for req in joined:
            self.prefilling.remove(req)
            dec.join(req)
        self._retire(done, end)

    def _retire(self, done: list[Request], end: float) -> None:
        """Requests done at `end` leave in running order, as the reference frees them (the
        order their blocks enter the prefix cache's free queue)."""
        if len(done) > 1:
            done.sort(key=_seat)
        for req in done:
            self.sched.retire(req)
            self.finished(req, end)

    def _head_stays_blocked(self) -> bool:
        """Whether no waiting request can be admitted in any decode-only iteration from now
        until a decoder finishes: then the scheduler's admission changes nothing and a decode
        run may go on with requests waiting (a saturated replica). The policy must not
        evict (preemptive) or promote (starvation prevention), the waiting head must be
        stuck behind the seats, which stay full until a finish, or behind the free blocks,
        which decoders only take, where no hit can lower what it needs: without prefix
        caching, or with it while no block has a key anybody can look up (the pool's
        blocks are `anonymous`; decoders set no keys then). Conservative: the scheduler
        asks with the decoders' blocks of the next iteration already taken."""
        sched = self.sched
        if sched.policy.preemptive or sched.policy.starvation is not None:
            return False
        if len(sched.running) >= sched.config.max_num_seqs:
            return True
        head = sched.waiting.head()
        if head is None:
            return True
        return self.pool.anonymous and not self.pool.can_allocate(
            head, head.chunk(sched.config.max_num_batched_tokens))

    def _run_decodes(self, until: float) -> None:
        """Run, with none of the per-iteration machinery, the decode-only iterations that
        end by `until`, and start the one that ends after it.

        The replica holds decoders only and nobody waits, or nobody waiting can be admitted
        (`_head_stays_blocked`) until a decoder finishes, so each iteration feeds every
        decoder one token and admits nobody; its context C grows by one token per decoder;
        it needs the blocks of one phase bucket (`DecoderAggregate`); its time is
        max(a + b * C, floor) (`cost.decode_affine`), or the cost model's `iteration_time`
        where it has no closed form. The run goes on through decoders finishing (fewer
        decoders, a new form) and stops at the iteration that would end after `until`
        (started here, in flight) or that finds the pool dry (left to `_start`: it
        preempts). Ends are summed one by one, as the step-by-step loop sums them, so
        every decision is the same, and each iteration is priced once; what the loop would
        record is recorded (ITL, blocks, busy time, tokens, finishes)."""
        self.decode_runs += 1
        dec, sched, pool, cost = self.decoders, self.sched, self.pool, self.cost
        budget = sched.config.max_num_batched_tokens
        by_phase, bs = dec.by_phase, pool.block_size
        itl = self.records.itl
        edges = itl.edges
        affine_of, known = getattr(cost, "decode_affine", None), self.affine
        now, steps, flight = self.now, 0, None
        left = self.max_iterations - self.iterations
        cap, bins, binned = pool.num_blocks, itl.bins, self.itl_bin
        affine_run = self.affine_run
        while flight is None and 0 < dec.size <= budget:
            n = dec.size
            if n not in known:
                known[n] = affine_of(n) if affine_of is not None else None
            affine = known[n]
            to_finish = dec._finishing[0][0] - dec.tick  # dec.steps_to_next_finish()
            k = to_finish if to_finish < left - steps else left - steps
            context = dec.base_sum + n * (dec.tick + 1)  # dec.context_after_step()
            start, used = now, cap - pool.free_blocks
            if affine is not None and affine[1] >= 0.0 and \
                    affine[0] + affine[1] * context >= affine[2]:
                # its context only grows, so the floor never binds: the lean loop
                j, now, used_now, block_seconds, flight = affine_run(
                    k, until, now, context, n, affine[0], affine[1], -dec.tick % bs, by_phase,
                    used, cap, binned, bins, edges)
            else:
                j, now, used_now, block_seconds, flight = _priced_run(
                    k, until, now, context, n, affine, cost, -dec.tick % bs, by_phase, used,
                    cap, binned, bins, edges)
            if j:
                itl.total += n * j
                itl.sum += (now - start) * n  # the gaps of a run add up to its span
                pool.take(used_now - used)
                self.iterations += j
                self.batched_seqs += n * j
                self.busy_time += now - start
                self.block_seconds += block_seconds
                self.outstanding_tokens += n * j
                steps += j
                if j == to_finish:  # its last iteration finished some decoders
                    dec.skip(j - 1)
                    self._retire(dec.step(), now)
                    if sched.waiting.heap:  # a seat or blocks freed: someone may fit now
                        break
                    continue
                dec.skip(j)
            break
        if steps:
            sched.iteration += steps
            sched.waiting.promote(sched.iteration)  # no promotion while anyone waits (above)
            self.now = self.last_end = now
        if flight is not None:  # as `_start` would start it
            need, t = flight
            sched.begin_iteration()
            pool.take(need)
            dec.ahead = 1
            self.items = []
            self.end = now + self.account(dec.size, t)

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
        return {**super().stats(), "ordered_iterations": self.ordered_iterations,
                "decode_runs": self.decode_runs}


def _affine_run(k: int, until: float, now: float, context: int, n: int, a: float, b: float,
                phase: int, by_phase: list[int], used: int, cap: int, binned: list,
                bins: list[int], edges: list[float]) -> tuple[int, float, int, float, tuple | None]:
    """Up to `k` decode-only iterations of `n` decoders from `now`, the i-th (from 0)
    taking a + b * (context + n * i) (`FastReplica._run_decodes`), that end by `until`
    and find the blocks they need (`by_phase`, from `phase`; `used` of `cap` in use).
    Records their inter-token gaps into `bins` (one count per decoder), starting from the
    bin `binned` = [index, lo, hi] (the last run's, updated). Returns (iterations run, when
    the last one ended, blocks then in use, used blocks x seconds over them, (blocks,
    seconds) of the one starting at `now` that ends after `until`, or None). One
    iteration per pass: every line here runs millions of times, which is why `_runs.c`
    holds the same loop compiled (used when built; tests/test_engine_runs.py holds the two
    to the same results)."""
    bs = len(by_phase)
    block_seconds = 0.0
    index, lo, hi = binned
    binned_from = 0  # the gaps of iterations binned_from.. fall in bin `index`
    flight = None
    for j in range(k):
        need = by_phase[(phase - j) % bs]
        if used + need > cap:
            break
        t = a + b * context
        end = now + t
        if end > until:
            if now < until:  # one starting at `until` waits for its arrivals
                flight = (need, t)
            break
        used += need
        block_seconds += used * t
        gap = end - now
        if not lo <= gap < hi:  # another ITL bin (the gaps grow slowly)
            index, binned_from, lo, hi = _rebin(bins, index, binned_from, j, n, gap, edges)
        now = end
        context += n
    else:
        j = k
    bins[index] += (j - binned_from) * n
    binned[:] = index, lo, hi
    return j, now, used, block_seconds, flight


def _priced_run(k: int, until: float, now: float, context: int, n: int,
                affine: tuple[float, float, float] | None, cost: CostModel, phase: int,
                by_phase: list[int], used: int, cap: int, binned: list, bins: list[int],
                edges: list[float]) -> tuple[int, float, int, float, tuple | None]:
    """`_affine_run` for any cost model: each iteration takes max(a + b * C, floor) where
    `affine` = (a, b, floor) is given, else the cost model's `iteration_time`."""
    bs = len(by_phase)
    block_seconds = 0.0
    index, lo, hi = binned
    binned_from = 0
    flight = None
    j = 0
    while j < k:
        need = by_phase[(phase - j) % bs]
        if used + need > cap or now >= until:  # an iteration that would start at `until`
            break  # starts after what happens then (an arrival): not priced here, once later
        if affine is not None:
            t = affine[0] + affine[1] * context
            if t < affine[2]:
                t = affine[2]
        else:
            t = cost.iteration_time(IterationShape(n, n, (), n, context, n))
        end = now + t
        if end > until:
            flight = (need, t)
            break
        used += need
        block_seconds += used * t
        gap = end - now
        if not lo <= gap < hi:
            index, binned_from, lo, hi = _rebin(bins, index, binned_from, j, n, gap, edges)
        now = end
        context += n
        j += 1
    bins[index] += (j - binned_from) * n
    binned[:] = index, lo, hi
    return j, now, used, block_seconds, flight


def _rebin(bins: list[int], index: int, binned_from: int, j: int, n: int, gap: float,
           edges: list[float]) -> tuple[int, int, float, float]:
    """A run's inter-token gap left its ITL bin at iteration `j`: count the `n` gaps of each
    iteration from `binned_from` into bin `index`, and return the bin `gap` falls in, `j`,
    and that bin's edges [lo, hi)."""
    bins[index] += (j - binned_from) * n
    index = bisect_right(edges, gap)
    return (index, j, edges[index - 1] if index else -math.inf,
            edges[index] if index < len(edges) else math.inf)


def _seat(req: Request) -> int:
    return req.seat


class FastCluster(Cluster):
    def make_replica(self, index: int, scheduler: Scheduler, cost: CostModel,
                     max_iterations: int) -> Replica:
        return FastReplica(index, scheduler, cost, self.records, self.count, max_iterations)

    def run(self) -> Records:
        replicas, arrive, last = cast(list[FastReplica], self.replicas), self.arrive, None
        for row in self.rows():  # `arrivals` ungrouped: most instants have one arrival
            t = row[1]
            if t != last:  # simultaneous arrivals come in trace order, after the advance
                for r in replicas:
                    r.advance(t)
                last = t
            arrive(*row)
        for r in replicas:
            r.advance(math.inf)
        self.check_done()
        return self.records
