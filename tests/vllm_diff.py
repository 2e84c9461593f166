"""Differential harness: vLLM's real V1 scheduler and llmsim's, stepped through the same
iterations on the same requests, compared after every one.

This is the one module that touches both engines (the adapter): llmsim only through its
scheduler's public surface (`Scheduler(config, pool, policy)`, `.add`, `.schedule`,
`.complete`, `.running`, the pool's `free_blocks`, `Request` fields), vLLM through the
calls its engine core makes (`add_request`, `schedule`, `update_from_output`).

One step = one engine iteration: vLLM's `schedule()`, then `update_from_output()` with a
synthetic model output (one sampled token for each scheduled request whose prompt, or
recomputed prompt + output, is done; requests stop at exactly their output length), and
llmsim's `schedule` then `complete`. Arrivals join between steps. After each step both
engines are reduced to a `Step` (what ran, how many tokens each got, who was preempted,
who finished, free KV blocks, running order, who waits, every request's progress) and the
two must be equal.

`vllm_timeline` adds a clock: each iteration is priced by a cost model from vLLM's own
request state, so that llmsim's simulated TTFT and finish times can be checked against
those of vLLM's schedule.

Request ids are zero-padded strings in vLLM, so that its heap's last tie-break (the id
string) orders them as llmsim's integer ids. vLLM keeps one block of its pool as a null
block: a pool of `num_blocks` usable blocks is vLLM's `num_blocks + 1`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from llmsim.engine.blocks import BlockPool
from llmsim.engine.config import EngineConfig
from llmsim.engine.cost import CostModel, IterationShape
from llmsim.engine.prefix_cache import CachingBlockPool
from llmsim.engine.request import Request, State
from llmsim.engine.scheduler import Scheduler
from llmsim.policies import FCFS, Policy

# What the synthetic model samples, plus the request's id: never a stop token (ignore_eos),
# and above every prompt token the tests make (stems 1-899, 1000 + id, 2000 + id), so that
# no output continues another prompt. vLLM caches full blocks of outputs too: a request
# resending stem[:s] that sampled stem[s] would lend a later prompt one more block.
SAMPLED_TOKEN = 100_000


@dataclass(frozen=True, slots=True)
class Setup:
    policy: str  # vLLM's scheduling policy: "fcfs" or "priority"
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    num_blocks: int  # usable KV blocks (vLLM's pool has one more, its null block)


@dataclass(frozen=True, slots=True)
class Job:
    id: int  # also its place in arrival order
    arrival: float
    prompt: int
    output: int
    priority: int = 0  # vLLM's `priority`; llmsim's rank under the priority policy
    tokens: tuple[int, ...] = ()  # its prompt's token ids, to share prefixes (prefix caching);
    # () for a prompt no other shares

    def prompt_ids(self) -> list[int]:
        """The prompt vLLM is given: `tokens`, or a first token of its own then 7s."""
        if self.tokens:
            assert len(self.tokens) == self.prompt
            return list(self.tokens)
        return [1000 + self.id] + [7] * (self.prompt - 1)

    def block_keys(self, block_size: int) -> list[int] | None:
        """llmsim's keys for its prompt's full blocks: a chained hash of the tokens up to
        each block's end (vLLM hashes the same tokens its own way; only which blocks are
        equal matters). None when no other prompt can share its blocks."""
        if not self.tokens:
            return None
        return [hash(self.tokens[:(j + 1) * block_size]) & ((1 << 62) - 1)
                for j in range(self.prompt // block_size)]


class Step(NamedTuple):
    """One iteration as both engines must agree on it."""

    scheduled: tuple[tuple[int, int], ...]  # (request, tokens fed), in batch order
    preempted: tuple[int, ...]  # sorted
    finished: tuple[int, ...]  # sorted
    free_after_schedule: int  # KV blocks free once the iteration's slots are allocated
    free_after_step: int  # and once finished requests freed theirs
    running: tuple[int, ...]  # the running set, in running order
    waiting: tuple[int, ...]  # sorted
    progress: tuple[tuple[int, int, int], ...]  # (request, computed, emitted), unfinished
    keyed_free: int = -1  # prefix caching: free blocks still holding a cached prefix
    evictions: int = -1  # prefix caching: cached blocks handed out again, so far


class Fed(NamedTuple):
    """A scheduled request as the cost model needs it, read before the iteration ran."""

    tokens: int  # fed this iteration
    computed: int  # tokens already in its KV cache (or scheduled into it, in flight)
    emitted: int  # tokens sampled so far (or to be, in flight)
    samples: bool  # it samples a token at the end of this iteration


def llmsim_policy(setup: Setup, jobs: list[Job]) -> Policy:
    """llmsim's counterpart of vLLM's policy: FCFS, or a priority policy ranking each request
    by its vLLM priority (ties by arrival, then id, as vLLM's heap)."""
    if setup.policy == "fcfs":
        return FCFS
    priority = {job.id: float(job.priority) for job in jobs}
    return Policy("vllm-priority", lambda req, now: priority[req.id], victim="priority",
                  description="vLLM's priority scheduling on the jobs' priorities")


def engine_config(setup: Setup, prefix_caching: bool = False) -> EngineConfig:
    return EngineConfig(max_num_seqs=setup.max_num_seqs,
                        max_num_batched_tokens=setup.max_num_batched_tokens,
                        block_size=setup.block_size, num_gpu_blocks=setup.num_blocks,
                        enable_prefix_caching=prefix_caching)


def vllm_id(job_id: int) -> str:
    return f"{job_id:08d}"


class Scheduled(NamedTuple):
    output: object  # vLLM's SchedulerOutput
    fed: dict[int, Fed]  # by request id, in batch order
    free_blocks: int  # right after scheduling


class VllmEngine:
    """vLLM's V1 `Scheduler` (or `AsyncScheduler`) with a synthetic model behind it. With
    `prefix_caching` (vLLM's default; off unless asked) no two prompts share a prefix: the
    cache can only hit a request's own blocks, kept after a preemption."""

    def __init__(self, setup: Setup, model_config, async_scheduling: bool = False,
                 prefix_caching: bool = False) -> None:
        from vllm.v1.core.sched.async_scheduler import AsyncScheduler

        from tests.vllm_scheduler import block_hasher, build_scheduler

        self.max_model_len = model_config.max_model_len
        self.sched = build_scheduler(
            model_config, AsyncScheduler if async_scheduling else None,
            num_blocks=setup.num_blocks + 1, block_size=setup.block_size,
            max_num_seqs=setup.max_num_seqs, max_num_batched_tokens=setup.max_num_batched_tokens,
            policy=setup.policy, async_scheduling=async_scheduling,
            prefix_caching=prefix_caching)
        self.hasher = block_hasher(setup.block_size) if prefix_caching else None
        self.pool = self.sched.kv_cache_manager.block_pool
        self.fed: dict[int, Fed] = {}  # the last step's batch
        self.caching = prefix_caching
        self.evictions = 0
        if prefix_caching:  # count evictions: cached blocks whose hash goes as they are reused
            evict = self.pool._maybe_evict_cached_block

            def counted(block):
                evicted = evict(block)
                self.evictions += evicted
                return evicted

            self.pool._maybe_evict_cached_block = counted

    def add(self, job: Job) -> None:
        from tests.vllm_scheduler import vllm_request

        assert job.prompt + job.output <= self.max_model_len, "vLLM would cut it short"
        self.sched.add_request(vllm_request(vllm_id(job.id), job.arrival, job.prompt,
                                            max_tokens=job.output, priority=job.priority,
                                            prompt_ids=job.prompt_ids(), hasher=self.hasher))

    def has_work(self) -> bool:
        return self.sched.get_num_unfinished_requests() > 0

    def has_requests(self) -> bool:
        """Unfinished requests, or finished ones the workers are yet to be told of: what
        vLLM's engine core asks before it schedules."""
        return self.sched.has_requests()

    def schedule(self) -> Scheduled:
        sched = self.sched
        before = {r.request_id: (r.num_computed_tokens,
                                 r.num_output_tokens + r.num_output_placeholders)
                  for r in sched.requests.values()}
        out = sched.schedule()
        # After scheduling, a request whose KV (counting what is in flight) covers all its
        # tokens samples one; vLLM says so with `is_prefill_chunk`.
        fed = {int(i): Fed(n, *before[i], not sched.requests[i].is_prefill_chunk)
               for i, n in out.num_scheduled_tokens.items()}
        return Scheduled(out, fed, self.pool.get_num_free_blocks())

    def update(self, batch: Scheduled) -> tuple[list[int], list[int]]:
        """The model's output for `batch`: returns (requests given a token, requests done)."""
        from vllm.v1.outputs import ModelRunnerOutput

        ids = list(batch.output.num_scheduled_tokens)
        # each request samples a token of its own: no two outputs share a block
        sampled = [[SAMPLED_TOKEN + int(i)] if batch.fed[int(i)].samples else [] for i in ids]
        outputs = self.sched.update_from_output(batch.output, ModelRunnerOutput(
            req_ids=ids, req_id_to_index={i: k for k, i in enumerate(ids)},
            sampled_token_ids=sampled))
        got = [o for eco in outputs.values() for o in eco.outputs]
        return ([int(o.request_id) for o in got if o.new_token_ids],
                [int(o.request_id) for o in got if o.finish_reason is not None])

    def step(self) -> Step:
        """One synchronous engine step: schedule, run, update."""
        sched = self.sched
        batch = self.schedule()
        self.fed = batch.fed
        _, finished = self.update(batch)
        live = sched.requests.values()
        return Step(
            scheduled=tuple((i, f.tokens) for i, f in batch.fed.items()),
            preempted=tuple(sorted(int(i) for i in batch.output.preempted_req_ids)),
            finished=tuple(sorted(finished)),
            free_after_schedule=batch.free_blocks,
            free_after_step=self.pool.get_num_free_blocks(),
            running=tuple(int(r.request_id) for r in sched.running),
            waiting=tuple(sorted(int(r.request_id) for r in live
                                 if r.status.name in ("WAITING", "PREEMPTED"))),
            progress=tuple(sorted((int(r.request_id), r.num_computed_tokens,
                                   r.num_output_tokens) for r in live)),
            **(self.cache_state() if self.caching else {}),
        )

    def cache_state(self) -> dict:
        queue = self.pool.free_block_queue.get_all_free_blocks()
        return {"keyed_free": sum(b.block_hash is not None for b in queue),
                "evictions": self.evictions}


class LlmsimEngine:
    """llmsim's per-iteration scheduler, stepped as the reference replica steps it."""

    def __init__(self, setup: Setup, policy: Policy, prefix_caching: bool = False) -> None:
        config = engine_config(setup, prefix_caching)
        self.caching = prefix_caching
        self.pool = (CachingBlockPool if prefix_caching else BlockPool)(setup.num_blocks,
                                                                        setup.block_size)
        self.sched = Scheduler(config, self.pool, policy)
        self.requests: dict[int, Request] = {}  # unfinished
        self.fed: dict[int, Fed] = {}
        self.slots: dict[int, int] = {}  # block hash -> its slot number

    def add(self, job: Job) -> None:
        keys = job.block_keys(self.pool.block_size) if self.caching else None
        if keys is not None:  # the pool's keys are dense slot numbers: number the hashes
            keys = np.array([self.slots.setdefault(k, len(self.slots)) for k in keys], np.int64)
        req = Request(job.id, job.arrival, job.prompt, job.output, block_hashes=keys)
        assert self.sched.can_accept(req), "the harness only makes requests that fit the pool"
        self.requests[job.id] = req
        self.sched.add(req, job.arrival)

    def has_work(self) -> bool:
        return bool(self.requests)

    def step(self, now: float = 0.0) -> Step:
        batch = self.sched.schedule(now)
        free_after_schedule = self.pool.free_blocks
        self.fed = {r.id: Fed(n, r.computed, r.emitted, r.computed + n == r.num_tokens)
                    for r, n in batch.items}
        _, finished = self.sched.complete(batch, now)
        for req in finished:
            del self.requests[req.id]
        live = self.requests.values()
        return Step(
            scheduled=tuple((r.id, n) for r, n in batch.items),
            preempted=tuple(sorted(r.id for r in batch.preempted)),
            finished=tuple(sorted(r.id for r in finished)),
            free_after_schedule=free_after_schedule,
            free_after_step=self.pool.free_blocks,
            running=tuple(self.sched.running),
            waiting=tuple(sorted(r.id for r in live if r.state is State.WAITING)),
            progress=tuple(sorted((r.id, r.computed, r.emitted) for r in live)),
            **({"keyed_free": self.pool.keyed_free, "evictions": self.pool.evictions}
               if self.caching else {}),
        )


class Mismatch(AssertionError):
    """The engines disagree at `step`: `vllm` and `llmsim` are what each did."""

    def __init__(self, message: str, step: int = -1, vllm: Step | None = None,
                 llmsim: Step | None = None) -> None:
        super().__init__(message)
        self.step, self.vllm, self.llmsim = step, vllm, llmsim


def lockstep(setup: Setup, arrivals: list[list[Job]], model_config, max_steps: int | None = None,
             prefix_caching: bool = False, on_llmsim=None) -> int:
    """Step both engines until both are idle and every arrival has joined (`arrivals[k]`
    join before step k); raise `Mismatch` at the first step they disagree on. Returns the
    number of steps run; `on_llmsim(engine)` is then called with llmsim's. `max_steps`
    (livelock guard) defaults to a bound scaled by the work: a one-token budget needs a
    step per prompt and output token, and recomputation after preemption redoes some of
    them."""
    jobs = [job for batch in arrivals for job in batch]
    if max_steps is None:
        max_steps = len(arrivals) + 4 * sum(job.prompt + job.output for job in jobs) + 1000
    vllm = VllmEngine(setup, model_config, prefix_caching=prefix_caching)
    sim = LlmsimEngine(setup, llmsim_policy(setup, jobs), prefix_caching)
    history: list[Step] = []
    k = 0
    while k < len(arrivals) or vllm.has_work() or sim.has_work():
        if k >= max_steps:
            raise Mismatch(f"{setup}: still busy after {max_steps} steps (livelock?)")
        for job in arrivals[k] if k < len(arrivals) else ():
            vllm.add(job)
            sim.add(job)
        expected, got = vllm.step(), sim.step(float(k))
        if expected != got:
            raise Mismatch(describe(setup, jobs, k, expected, got, history), k, expected, got)
        history.append(expected)
        k += 1
    if on_llmsim is not None:
        on_llmsim(sim)
    return k


def describe(setup: Setup, jobs: list[Job], k: int, expected: Step, got: Step,
             history: list[Step]) -> str:
    lines = [f"step {k} differs; {setup}", "jobs (id, arrival, prompt, output, priority):",
             "  " + ", ".join(f"({j.id}, {j.arrival:g}, {j.prompt}, {j.output}, {j.priority})"
                              for j in jobs)]
    for field in Step._fields:
        a, b = getattr(expected, field), getattr(got, field)
        mark = "  " if a == b else "!!"
        lines.append(f"{mark} {field}: vllm={a} llmsim={b}")
    lines.append("previous steps (vLLM's, equal in both): scheduled / preempted / finished")
    lines += [f"  {j}: {s.scheduled} / {s.preempted} / {s.finished}"
              for j, s in list(enumerate(history))[-6:]]
    return "\n".join(lines)


# -- simulated time -------------------------------------------------------------------------

def shape_of(fed: dict[int, Fed]) -> IterationShape:
    """The cost model's view of one batch, from the engine's per-request state: a request
    feeding one token after it has emitted one, and sampling the next, decodes; anything
    else is a prefill chunk (a prompt chunk, or a recomputation after preemption)."""
    chunks = []
    num_tokens = num_decodes = decode_context = num_sampled = 0
    for f in fed.values():
        num_tokens += f.tokens
        num_sampled += f.samples
        if f.tokens == 1 and f.emitted > 0 and f.samples:
            num_decodes += 1
            decode_context += f.computed + 1
        else:
            chunks.append((f.tokens, f.computed))
    return IterationShape(num_tokens, len(fed), tuple(chunks), num_decodes, decode_context,
                          num_sampled)


class Timeline(NamedTuple):
    first_token: dict[int, float]  # by request id
    finish: dict[int, float]
    iterations: int  # forward passes


def vllm_timeline(setup: Setup, jobs: list[Job], cost: CostModel, model_config,
                  async_scheduling: bool = False) -> Timeline:
    """Run vLLM's scheduler on a clock, each forward pass lasting what `cost` prices its
    batch at, and return when each request got its first token and finished.

    Synchronous (`Scheduler`): schedule, run, update, as llmsim's iterations; a request
    joins the first iteration that starts at or after its arrival (one arriving as an
    iteration ends joins the next), and an idle engine waits for the next arrival.

    Asynchronous (`AsyncScheduler`, vLLM's default for `vllm serve`): the engine core's batch
    queue of two (`EngineCore.step_with_batch_queue`): it schedules batch k+1 while batch k
    runs, and applies batch k's output (tokens, finished requests and their freed blocks)
    only after that. Batches run back to back on the device; scheduling takes no time."""
    vllm = VllmEngine(setup, model_config, async_scheduling)
    first_token: dict[int, float] = {}
    finish: dict[int, float] = {}
    pending = sorted(jobs, key=lambda j: (j.arrival, j.id))
    queue: deque[tuple[Scheduled, float]] = deque()  # in flight, newest first, with end time
    depth = 2 if async_scheduling else 1
    now = device_free = 0.0
    i = iterations = 0
    while i < len(pending) or vllm.has_requests() or queue:
        if not vllm.has_work() and not queue and i < len(pending):
            now = max(now, pending[i].arrival)  # idle: wait for the next arrival
        while i < len(pending) and pending[i].arrival <= now:
            vllm.add(pending[i])
            i += 1
        if vllm.has_requests():
            batch = vllm.schedule()
            ran = bool(batch.fed)
            if ran:
                start = max(now, device_free)
                device_free = start + cost.iteration_time(shape_of(batch.fed))
                iterations += 1
            else:  # every candidate preempted itself, or all are in flight (async)
                assert batch.output.preempted_req_ids or queue or not vllm.has_work(), \
                    "vLLM scheduled nothing"
            queue.appendleft((batch, device_free if ran else max(now, device_free)))
            if len(queue) < depth and (ran or vllm.has_requests()):
                continue  # the queue has room: schedule the next batch first
        batch, end = queue.pop()
        now = max(now, end)
        emitted, finished = vllm.update(batch)
        for rid in emitted:
            first_token.setdefault(rid, now)
        for rid in finished:
            finish[rid] = now
    return Timeline(first_token, finish, iterations)
