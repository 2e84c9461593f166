"""Capacity: the steady-state completion rate of an engine saturated by the workload's mix.
Exact where it can be worked out by hand, deterministic, and what `--load` promises:
queues bounded below it and growing above it, heavy tail included."""

from __future__ import annotations

import numpy as np

from llmsim.capacity import START, capacity_rps, measure, saturated_mix
from llmsim.policies import FCFS
from llmsim.simulate import simulate
from llmsim.traces import arrivals
from llmsim.traces.workload import Workload

from .helpers import LinearCost, deployment, workload


def heavy_tailed(n: int, seed: int = 0, runaway: int = 60000) -> Workload:
    """Short answers, and 1% runaway generations: CASTILLO's shape, exaggerated."""
    rng = np.random.default_rng(seed)
    out = np.where(rng.random(n) < 0.01, runaway, rng.integers(20, 200, n))
    return Workload(np.zeros(n), rng.integers(10, 100, n), out)


def test_identical_requests_give_seats_over_residence():
    # every iteration takes 1 s; a request emits a token per iteration, its first with its
    # prefill: 8 seats each turned over every 10 iterations
    probe = measure(workload([(0, 5, 10)] * 3), deployment(max_num_seqs=8), LinearCost(1.0))
    assert probe.rate_rps == 0.8 and probe.preemptions == 0


def test_the_mix_is_the_workloads_and_evenly_spread():
    w = heavy_tailed(1000)
    mix = saturated_mix(w, 4000)
    assert np.array_equal(np.sort(mix.output_tokens), np.sort(np.repeat(w.output_tokens, 4)))
    long = mix.output_tokens > 1000
    gaps = np.diff(np.flatnonzero(long))
    assert gaps.max() <= 2 * 4000 / long.sum()  # no clumps of runaways
    assert np.all(mix.arrival == 0)


def test_same_workload_same_capacity():
    w = heavy_tailed(500, seed=3, runaway=2000)
    cost = LinearCost(0.01, per_context=1e-6)
    assert capacity_rps(w, deployment(max_num_seqs=32), cost) == \
        capacity_rps(w, deployment(max_num_seqs=32), cost)


def test_a_heavy_tail_gets_a_longer_probe():
    # 256 seats turn short requests over fast; a runaway stays >= 30 s, longer than half of
    # a START-request probe: the probe grows until its steady window holds half of it
    probe = measure(heavy_tailed(2000, runaway=3000), deployment(max_num_seqs=256),
                    LinearCost(0.01))
    assert probe.requests > START
    assert probe.in_window >= probe.requests / 2
    start, end = probe.window_s
    assert start >= 30  # the longest residence: 3,000 tokens at 0.01 s each


def test_queues_bounded_below_capacity_and_growing_above():
    w = heavy_tailed(2000, runaway=6000)
    d, cost = deployment(max_num_seqs=32), LinearCost(0.01, per_context=1e-6)
    capacity = capacity_rps(w, d, cost)
    n = 12000
    rng = np.random.default_rng(1)
    rows = rng.integers(0, len(w), n)
    waited = {}
    for load in (0.9, 1.1):
        times = arrivals.poisson(n, load * capacity, np.random.default_rng(2))
        r = simulate(Workload(times, w.prompt_tokens[rows], w.output_tokens[rows]), FCFS, d,
                     cost=cost).records
        delay = r.first_scheduled - r.arrival
        waited[load] = (np.mean(delay[: n // 6]), np.mean(delay[-n // 6:]))
    assert waited[0.9][1] < 1.0  # seconds: no queue to speak of
    assert waited[1.1][1] > 5 * max(waited[1.1][0], 1.0)  # growing
