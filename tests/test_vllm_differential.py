"""llmsim's scheduler against vLLM's own V1 scheduler, iteration by iteration, on random
workloads (the harness is tests/vllm_diff.py); then llmsim's simulated times against those
of vLLM's schedule priced by the same cost model. Skips where vLLM is not installed (its
CI venv: docs/vllm.md).

Each family runs until it has stepped both engines through at least
`LLMSIM_VLLM_DIFF_STEPS` iterations (default 10,000) and fails on the first difference.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsim import simulate
from llmsim.engine.config import EngineConfig
from llmsim.simulate import Deployment
from tests.helpers import LinearCost, workload
from tests.vllm_diff import (
    Job,
    LlmsimEngine,
    Setup,
    VllmEngine,
    llmsim_policy,
    lockstep,
    vllm_timeline,
)

MAX_MODEL_LEN = 1 << 14
STEPS = int(os.environ.get("LLMSIM_VLLM_DIFF_STEPS", "10000"))
CACHED_STEPS = int(os.environ.get("LLMSIM_VLLM_DIFF_CACHED_STEPS", str(STEPS // 2)))
CASES_PER_STEP = 3 / 100  # cases run 80 to 140 iterations each: 3 per 100 is 2.4x STEPS
ROUNDS = 3  # of draws, at most, to reach the iterations asked for: one round of 150
# prefix-caching cases once ran 4,754 iterations (12,600 to 24,400 in ten others)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def model_config(tmp_path_factory):
    pytest.importorskip("vllm")
    from tests.vllm_scheduler import tiny_model_config

    return tiny_model_config(tmp_path_factory.mktemp("tiny-llama"), MAX_MODEL_LEN)


def deployment_of(setup: Setup) -> Deployment:
    return Deployment(engine=EngineConfig(
        max_num_seqs=setup.max_num_seqs, max_num_batched_tokens=setup.max_num_batched_tokens,
        block_size=setup.block_size, num_gpu_blocks=setup.num_blocks,
        enable_prefix_caching=False))  # as VllmEngine and vllm_scheduler default


# -- random workloads -----------------------------------------------------------------------

@st.composite
def setups(draw, policy: str, tight: bool) -> Setup:
    max_num_seqs = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 16]))
    # vLLM refuses max_num_batched_tokens < max_num_seqs.
    budget = draw(st.one_of(st.integers(max_num_seqs, 32), st.integers(max_num_seqs, 512)))
    block_size = draw(st.sampled_from([1, 2, 4, 16]))
    tokens = draw(st.integers(16, 600) if tight else st.integers(4000, 12000))
    return Setup(policy, max_num_seqs, budget, block_size, max(2, tokens // block_size))


@st.composite
def cases(draw, policy: str, tight: bool) -> tuple[Setup, list[list[Job]]]:
    """A setup and, per step, the requests that join before it: several at once (ties in
    arrival), prompts from one token to several budgets, priorities with ties."""
    setup = draw(setups(policy, tight))
    capacity = setup.num_blocks * setup.block_size  # KV tokens: a request needs p + o - 1
    prompt = st.one_of(st.integers(1, 24), st.integers(1, 3 * setup.max_num_batched_tokens),
                       st.integers(1, 400))
    job = st.tuples(prompt, st.integers(1, 60), st.integers(0, 2))
    steps = draw(st.lists(st.lists(job, max_size=3), min_size=1, max_size=30))
    arrivals, next_id = [], 0
    for k, step in enumerate(steps):
        batch = []
        for p, o, priority in step:
            p = min(p, capacity)
            o = max(1, min(o, capacity - p + 1))
            batch.append(Job(next_id, float(k), p, o, priority))
            next_id += 1
        arrivals.append(batch)
    return setup, arrivals


FAMILIES = {
    "fcfs-loose": ("fcfs", False),
    "fcfs-tight": ("fcfs", True),  # preemptions: the last admitted is the victim
    "priority-loose": ("priority", False),
    "priority-tight": ("priority", True),  # preemptions: the largest (priority, arrival)
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_llmsim_schedules_every_iteration_as_vllm(family, model_config, capsys):
    policy, tight = FAMILIES[family]
    steps: list[int] = []
    start = time.perf_counter()

    @settings(max_examples=max(10, round(STEPS * CASES_PER_STEP)), deadline=None,
              database=None, suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])
    @given(case=cases(policy, tight))
    def check(case):
        setup, arrivals = case
        steps.append(lockstep(setup, arrivals, model_config))

    for _ in range(ROUNDS):  # hypothesis's draws vary: another round where they were short
        check()
        if sum(steps) >= STEPS:
            break
    with capsys.disabled():
        print(f"\n{family}: {len(steps)} workloads, {sum(steps):,} iterations, no difference "
              f"({time.perf_counter() - start:.1f} s)")
    assert sum(steps) >= STEPS, f"only {sum(steps)} iterations compared"


# -- hand-written cases that pin what the harness found --------------------------------------

def test_vllm_admits_only_when_the_whole_prompt_fits(model_config):
    """vLLM's scheduler_reserve_full_isl: a 32-token prompt waits while 7 blocks are free,
    though its first 4-token chunk would fit (llmsim: BlockPool.can_allocate)."""
    setup = Setup("fcfs", 4, 16, 4, 10)
    arrivals = [[Job(0, 0.0, 12, 2), Job(1, 0.0, 32, 1)]]
    vllm, sim = VllmEngine(setup, model_config), LlmsimEngine(setup, llmsim_policy(setup, []))
    for job in arrivals[0]:
        vllm.add(job)
        sim.add(job)
    first = vllm.step()
    assert first.scheduled == ((0, 12),) and first.free_after_schedule == 7
    assert sim.step() == first
    assert lockstep(setup, arrivals, model_config) == 4  # a, a, then b in two chunks


def test_vllm_goes_on_after_a_running_request_preempts_itself(model_config):
    """Priority: the worst-ranked running request preempts itself; the one after it in
    running order still runs in that iteration."""
    setup = Setup("priority", 4, 64, 2, 4)
    arrivals = [[Job(0, 0.0, 3, 5, priority=5)], [Job(1, 1.0, 3, 3, priority=3)], []]
    vllm = VllmEngine(setup, model_config)
    seen = []
    for batch in arrivals:
        for job in batch:
            vllm.add(job)
        seen.append(vllm.step())
    assert seen[2].preempted == (0,) and seen[2].scheduled == ((1, 1),)
    lockstep(setup, arrivals, model_config)


def test_vllm_priority_victim_among_ties_is_the_first_running(model_config):
    setup = Setup("priority", 4, 64, 2, 3)
    arrivals = [[Job(0, 0.0, 2, 3, priority=1), Job(1, 0.0, 2, 3, priority=1)], []]
    vllm = VllmEngine(setup, model_config)
    for job in arrivals[0]:
        vllm.add(job)
    vllm.step()
    second = vllm.step()
    assert second.preempted == (0,) and second.scheduled == ((1, 1),)
    lockstep(setup, arrivals, model_config)


# -- what llmsim does not model: pinned, so that a change on either side fails here -------

def test_vllm_defaults_llmsim_assumes(model_config):
    """llmsim mirrors vLLM's scheduler at these settings' defaults; a new default is a
    semantic change to look at (docs/vllm.md)."""
    from vllm.config import CacheConfig, SchedulerConfig

    config = SchedulerConfig(max_model_len=MAX_MODEL_LEN, is_encoder_decoder=False)
    assert config.scheduler_reserve_full_isl is True  # the whole-prompt admission gate
    assert config.watermark == 0.0  # no headroom kept at admission
    assert config.long_prefill_token_threshold == 0  # prompt chunks take what budget is left
    assert config.prefill_schedule_interval == 1  # prefills in every iteration
    assert config.max_num_active_seqs is None  # seats: max_num_seqs
    assert config.enable_chunked_prefill is True
    assert config.max_num_scheduled_tokens is None  # budget: max_num_batched_tokens
    # Pinned by the two tests below: async scheduling (None: on, unless the executor
    # cannot), not modelled, and prefix caching, on in llmsim too.
    assert config.async_scheduling is None
    assert CacheConfig().enable_prefix_caching is True


def test_async_scheduling_admits_an_arrival_one_iteration_later(model_config):
    """vLLM's default async scheduling schedules batch k+1 while batch k runs: a request
    arriving at a busy engine joins one iteration later than llmsim (synchronous) says.
    benchmarks/vllm_async_gap.py measures the effect: TTFT +14% to +18% on the bundled
    workload, TPOT and E2E within 1%."""
    setup = Setup("fcfs", 4, 64, 4, 40)
    jobs = [Job(0, 0.0, 4, 10), Job(1, 2.5, 4, 2)]  # iterations of 1 s; 1 arrives in the 3rd
    sync = vllm_timeline(setup, jobs, LinearCost(1.0), model_config)
    later = vllm_timeline(setup, jobs, LinearCost(1.0), model_config, async_scheduling=True)
    sim = simulate(workload([(j.arrival, j.prompt, j.output) for j in jobs]),
                   llmsim_policy(setup, jobs), deployment_of(setup), cost=LinearCost(1.0))
    assert sync.first_token == {0: 1.0, 1: 4.0} and sync.finish == {0: 10.0, 1: 5.0}
    assert later.first_token == {0: 1.0, 1: 5.0} and later.finish == {0: 10.0, 1: 6.0}
    assert list(sim.records.first_token) == [1.0, 4.0] and list(sim.records.finish) == [10, 5]


def test_prefix_caching_resumes_a_preempted_request_from_its_cached_blocks(model_config):
    """vLLM caches prefixes by default: a preempted request's full blocks stay cached until
    evicted, and on resuming it recomputes only what was evicted. Here (no two prompts
    share a prefix) B, preempted with 25 tokens, gets 3 of its blocks back from the cache
    and recomputes 13 tokens, not 25: llmsim with prefix caching does the same, without it
    recomputes all 25."""
    setup = Setup("fcfs", 2, 64, 4, 12)
    arrivals = [[Job(0, 0.0, 16, 20), Job(1, 0.0, 16, 20)]]
    assert lockstep(setup, arrivals, model_config, prefix_caching=True) == 31
    vllm = VllmEngine(setup, model_config, prefix_caching=True)
    sim = LlmsimEngine(setup, llmsim_policy(setup, []))  # caching off
    for job in arrivals[0]:
        vllm.add(job)
        sim.add(job)
    steps = [(vllm.step(), sim.step()) for _ in range(21)]
    assert steps[20][0].scheduled == ((1, 13),) and steps[20][1].scheduled == ((1, 25),)


# -- prefix caching: shared prefixes, hits, evictions -------------------------------------------

STEMS = [tuple(int(t) for t in np.random.default_rng(s).integers(1, 900, 1200)) for s in range(3)]


@st.composite
def shared_cases(draw, policy: str, tight: bool) -> tuple[Setup, list[list[Job]]]:
    """As `cases`, with prompts that share prefixes: a request takes the first `shared`
    tokens of one of three stems (all of it: a resend of an earlier prompt), then tokens of
    its own. Outputs never share (each request samples its own token)."""
    setup = draw(setups(policy, tight))
    capacity = setup.num_blocks * setup.block_size
    job = st.tuples(st.integers(1, 400), st.integers(1, 60), st.integers(0, 2),
                    st.integers(0, 2), st.one_of(st.integers(0, 400), st.just(10_000)))
    steps = draw(st.lists(st.lists(job, max_size=3), min_size=1, max_size=30))
    arrivals, next_id = [], 0
    for k, step in enumerate(steps):
        batch = []
        for p, o, priority, stem, shared in step:
            p = min(p, capacity)
            o = max(1, min(o, capacity - p + 1))
            shared = min(shared, p)
            tokens = STEMS[stem][:shared] + (2000 + next_id,) * (p - shared)
            batch.append(Job(next_id, float(k), p, o, priority, tokens))
            next_id += 1
        arrivals.append(batch)
    return setup, arrivals


@pytest.mark.parametrize("family", list(FAMILIES))
def test_llmsim_caches_prefixes_as_vllm(family, model_config, capsys):
    """Prefix caching on in both: every iteration the same hits (what each request is fed),
    the same free blocks, the same free blocks still cached, the same evictions so far."""
    policy, tight = FAMILIES[family]
    steps: list[int] = []
    hits: list[int] = []
    evictions: list[int] = []
    start = time.perf_counter()

    @settings(max_examples=max(10, round(CACHED_STEPS * CASES_PER_STEP)), deadline=None,
              database=None, suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])
    @given(case=shared_cases(policy, tight))
    def check(case):
        setup, arrivals = case
        steps.append(lockstep(setup, arrivals, model_config, prefix_caching=True,
                              on_llmsim=lambda sim: hits.append(sim.pool.hit_tokens)
                              or evictions.append(sim.pool.evictions)))

    for _ in range(ROUNDS):
        check()
        if sum(steps) >= CACHED_STEPS:
            break
    with capsys.disabled():
        print(f"\n{family} (prefix caching): {len(steps)} workloads, {sum(steps):,} iterations, "
              f"{sum(hits):,} tokens hit, {sum(evictions):,} evictions, no difference "
              f"({time.perf_counter() - start:.1f} s)")
    assert sum(steps) >= CACHED_STEPS, f"only {sum(steps)} iterations compared"
    assert sum(hits) > 0 and (sum(evictions) > 0 or not tight)


# -- simulated time -------------------------------------------------------------------------

class AttentionCost:
    """Every term of the shape counts, so any difference in a batch shows in the clock."""

    label = "attention-aware test cost"

    def iteration_time(self, shape) -> float:
        prefill = sum(n * (ctx + (n + 1) / 2) for n, ctx in shape.prefill_chunks)
        return (0.013 + 2.1e-5 * shape.num_tokens + 3.7e-8 * prefill
                + 1.9e-7 * shape.decode_context + 4.3e-4 * shape.num_sampled
                + 1.1e-4 * shape.num_seqs)


COSTS = {
    "unit": lambda: LinearCost(base=1.0),  # integer clock: arrivals land on iteration ends
    "attention": AttentionCost,
    "roofline": lambda: Deployment().cost_model(),  # llama-3-8b on an H100, llmsim's default
}


@st.composite
def timed_cases(draw):
    policy = draw(st.sampled_from(["fcfs", "priority"]))
    setup = draw(setups(policy, tight=draw(st.booleans())))
    capacity = setup.num_blocks * setup.block_size
    arrival = st.one_of(st.integers(0, 40).map(float), st.floats(0, 40, allow_nan=False))
    rows = draw(st.lists(st.tuples(arrival, st.integers(1, 300), st.integers(1, 50),
                                   st.integers(0, 2)), min_size=1, max_size=30))
    rows.sort(key=lambda r: r[0])
    jobs = []
    for i, (a, p, o, priority) in enumerate(rows):
        p = min(p, capacity)
        jobs.append(Job(i, a, p, max(1, min(o, capacity - p + 1)), priority))
    return setup, jobs, draw(st.sampled_from(sorted(COSTS)))


@settings(max_examples=int(os.environ.get("LLMSIM_VLLM_DIFF_TIMED", "150")), deadline=None,
          database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=timed_cases())
def test_llmsim_times_equal_vllm_schedule_priced_by_the_same_cost(model_config, case):
    setup, jobs, cost_name = case
    expected = vllm_timeline(setup, jobs, COSTS[cost_name](), model_config)
    rows = [(j.arrival, j.prompt, j.output) for j in jobs]
    deployment = deployment_of(setup)
    first = np.array([expected.first_token[j.id] for j in jobs])
    finish = np.array([expected.finish[j.id] for j in jobs])
    for simulator in ("reference", "fast"):
        res = simulate(workload(rows), llmsim_policy(setup, jobs), deployment,
                       cost=COSTS[cost_name](), simulator=simulator)
        np.testing.assert_array_equal(res.records.first_token, first, err_msg=simulator)
        np.testing.assert_array_equal(res.records.finish, finish, err_msg=simulator)


def test_shapes_priced_from_vllm_state_are_llmsim_shapes(model_config):
    """The timeline prices vLLM's batches with `shape_of`, written from vLLM's request state;
    on a workload with prompt chunks, decodes and a recomputation it gives llmsim's shapes."""
    setup = Setup("fcfs", 3, 8, 2, 12)
    jobs = [Job(0, 0.0, 16, 4), Job(1, 0.0, 5, 6), Job(2, 1.5, 9, 3)]
    priced = []

    class Spy:
        label = "spy"

        def iteration_time(self, shape):
            priced.append(shape)
            return 1.0

    vllm_timeline(setup, jobs, Spy(), model_config)
    rows = [(j.arrival, j.prompt, j.output) for j in jobs]
    seen = LinearCost(base=1.0)
    res = simulate(workload(rows), llmsim_policy(setup, jobs), deployment_of(setup),
                   cost=seen, simulator="reference")
    assert priced == seen.shapes
    assert any(ctx > 0 for s in priced for _, ctx in s.prefill_chunks)  # a later chunk
    assert any(s.num_decodes for s in priced)
    assert res.records.preemptions.sum() > 0
