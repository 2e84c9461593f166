"""The fast simulator against the reference simulator: identical records on random workloads,
with decode runs priced one iteration at a time (LinearCost) and at once (RunLinearCost)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim import simulate
from llmsim.policies import FCFS, MLFQ, SJF, SRPT, with_starvation_prevention
from llmsim.policies.mlfq import SkipJoinLevel
from tests.helpers import LinearCost, RunLinearCost, deployment, workload

POLICIES = [FCFS, SJF, SRPT, MLFQ, with_starvation_prevention(SJF, 3, 2),
            with_starvation_prevention(SRPT, 5, 1),
            replace(MLFQ, rank=SkipJoinLevel(4, 2, 16)),  # small quanta: many demotions
            replace(SJF, name="sjf-scored", scoring_delay=0.7)]
COMPARED = ("first_scheduled", "first_token", "finish", "emitted_tokens", "preemptions",
            "recomputed_tokens", "replica", "rejected")

requests = st.lists(
    st.tuples(st.floats(0, 30, allow_nan=False), st.integers(1, 200), st.integers(1, 80)),
    min_size=1, max_size=40,
).map(lambda rows: sorted(rows, key=lambda r: r[0]))

# Some arrivals on a coarse grid, so that simultaneous arrivals and arrivals exactly at an
# iteration end (integer costs) happen.
grid_requests = st.lists(
    st.tuples(st.integers(0, 40).map(float), st.integers(1, 60), st.integers(1, 30)),
    min_size=1, max_size=40,
).map(lambda rows: sorted(rows, key=lambda r: r[0]))

configs = st.fixed_dictionaries({
    "max_num_seqs": st.integers(1, 12),
    "max_num_batched_tokens": st.integers(1, 256),
    "block_size": st.sampled_from([1, 2, 4, 16]),
    "num_gpu_blocks": st.integers(1, 120),
    "num_replicas": st.integers(1, 3),
    "router": st.sampled_from(["round-robin", "least-tokens"]),
    "enable_prefix_caching": st.booleans(),  # no ids: it changes only what preemption costs
})

# Low load and long outputs: few requests far apart, so that decoders run alone for long
# stretches between arrivals and the fast simulator prices runs of them at once.
sparse_requests = st.lists(
    st.tuples(st.floats(0, 400, allow_nan=False), st.integers(1, 300), st.integers(1, 400)),
    min_size=1, max_size=12,
).map(lambda rows: sorted(rows, key=lambda r: r[0]))

# (base, per token, per context token, floor): the last one's floor binds while contexts are
# short (a CPU-bound step), so runs of decodes start under it and cross it
costs = st.sampled_from([(1.0, 0.0, 0.0), (0.1, 0.002, 0.0003), (0.02, 0.001, 1e-5),
                         (0.02, 0.001, 1e-4, 0.06)])


def assert_same(rows, cfg, policy, cost_args):
    dep = deployment(**cfg)
    priced = LinearCost(*cost_args)
    ref = simulate(workload(rows), policy, dep, cost=priced, simulator="reference")
    for cost in (LinearCost(*cost_args), RunLinearCost(*cost_args)):
        fast = simulate(workload(rows), policy, dep, cost=cost, simulator="fast")
        if type(cost) is LinearCost:  # every iteration priced once, none it does not run
            # (replicas interleave their pricing differently: compared as multisets)
            assert sorted(map(tuple, cost.shapes)) == sorted(map(tuple, priced.shapes))
        a, b = ref.records.columns(), fast.records.columns()
        for name in COMPARED:
            np.testing.assert_allclose(b[name].astype(float), a[name].astype(float), rtol=1e-9,
                                       atol=0, equal_nan=True, err_msg=name)
        np.testing.assert_array_equal(ref.records.itl.counts, fast.records.itl.counts)
        for key in ("iterations", "mean_batch_size", "kv_utilization", "busy_fraction"):
            assert np.isclose(ref.summary[key], fast.summary[key], rtol=1e-9), key


@settings(max_examples=400, deadline=None)
@given(rows=requests, cfg=configs, policy=st.sampled_from(POLICIES), cost=costs)
def test_fast_engine_matches_reference(rows, cfg, policy, cost):
    assert_same(rows, cfg, policy, cost)


@settings(max_examples=300, deadline=None)
@given(rows=grid_requests, cfg=configs, policy=st.sampled_from(POLICIES))
def test_fast_engine_matches_reference_on_ties(rows, cfg, policy):
    assert_same(rows, cfg, policy, (1.0, 0.0, 0.0))


@settings(max_examples=300, deadline=None)
@given(rows=sparse_requests, cfg=configs, policy=st.sampled_from(POLICIES), cost=costs)
def test_fast_engine_matches_reference_at_low_load_with_long_outputs(rows, cfg, policy, cost):
    assert_same(rows, cfg, policy, cost)


def poisson_rows(seed: int, n: int, mean_gap: float, prompts: tuple[int, int],
                 outputs: tuple[int, int]) -> list[tuple]:
    """(arrival, prompt, output) rows: Poisson arrivals, lengths uniform in [lo, hi)."""
    rng = np.random.default_rng(seed)
    return list(zip(np.cumsum(rng.exponential(mean_gap, n)), rng.integers(*prompts, n),
                    rng.integers(*outputs, n), strict=True))


def assert_same_for_every_policy(rows, cfgs, cost) -> None:
    for policy in POLICIES:
        for cfg in cfgs:
            assert_same(rows, cfg, policy, cost)


def test_fast_engine_matches_reference_on_a_busy_pool():
    assert_same_for_every_policy(
        poisson_rows(3, 400, 0.02, (1, 400), (1, 300)),
        ({"num_gpu_blocks": 300, "block_size": 16},
         {"num_gpu_blocks": 2000, "max_num_batched_tokens": 512, "max_num_seqs": 64},
         {"num_gpu_blocks": 700, "num_replicas": 3, "router": "least-tokens"}),
        (0.005, 2e-5, 1e-7))


def test_fast_engine_matches_reference_on_long_decode_runs_in_a_tight_pool():
    # Long outputs at low load: decoders run alone between arrivals, cross many block
    # boundaries and run the pool dry in the middle of a run (preemption follows).
    assert_same_for_every_policy(
        poisson_rows(5, 120, 3.0, (1, 600), (200, 1500)),
        ({"num_gpu_blocks": 400, "block_size": 16, "max_num_seqs": 8},
         {"num_gpu_blocks": 5000, "block_size": 4},
         {"num_gpu_blocks": 900, "num_replicas": 2, "router": "least-tokens"}),
        (0.01, 1e-4, 2e-6))


def test_rows_are_the_same_whatever_the_chunk():
    from llmsim.engine.config import EngineConfig
    from llmsim.engine.fast import FastCluster
    from llmsim.engine.router import RoundRobin

    w = workload([(0.0, 1, 2), (0.0, 3, 4), (1.5, 5, 6), (2.0, 7, 8), (2.0, 9, 10)])
    cluster = FastCluster(w, FCFS, LinearCost(0.1, 0.0), EngineConfig(), 100, RoundRobin())
    assert list(cluster.rows(chunk=2)) == list(cluster.rows()) == [
        (0, 0.0, 0.0, 1, 2), (1, 0.0, 0.0, 3, 4), (2, 1.5, 1.5, 5, 6), (3, 2.0, 2.0, 7, 8),
        (4, 2.0, 2.0, 9, 10)]


def test_fast_engine_matches_reference_with_a_queue_behind_full_seats_or_blocks():
    # Saturated: requests arrive faster than few seats (or a small pool) serve them, so
    # decoders run on with requests waiting that cannot be admitted until one finishes.
    assert_same_for_every_policy(
        poisson_rows(11, 150, 0.05, (1, 200), (20, 400)),
        ({"max_num_seqs": 4, "block_size": 16},
         {"num_gpu_blocks": 120, "block_size": 16},
         {"max_num_seqs": 6, "num_gpu_blocks": 200, "block_size": 4,
          "num_replicas": 2, "router": "least-tokens"}),
        (0.01, 1e-4, 2e-6))
