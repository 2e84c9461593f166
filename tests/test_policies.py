"""Policies by hand: MLFQ levels, predicted SJF, the scoring delay on the request path."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim import simulate
from llmsim.engine.request import Request
from llmsim.policies import FCFS, MLFQ, get_policy
from llmsim.policies.mlfq import SkipJoinLevel
from llmsim.policies.predicted import predicted_sjf
from llmsim.policies.scoring import release_times
from tests.helpers import LinearCost, deployment, workload


def test_skip_join_levels():
    level = SkipJoinLevel(levels=4, base_quantum=2, join_tokens=100)
    assert [level.join(p) for p in (1, 100, 101, 200, 201, 10_000)] == [0, 0, 1, 1, 2, 3]
    req = Request(0, 0.0, 50, 100)
    # quanta 2, 4, 8 at levels 0, 1, 2: demoted after 2, 6 and 14 tokens; level 3 is last
    levels = []
    for emitted in (0, 1, 2, 5, 6, 13, 14, 99):
        req.emitted = emitted
        levels.append(level(req, 0.0))
    assert levels == [0, 0, 1, 1, 2, 2, 3, 3]
    req = Request(1, 0.0, 150, 100)  # joins at level 1: quanta 4, 8
    req.emitted = 4
    assert level(req, 0.0) == 2


def test_mlfq_demotes_a_long_running_request_for_a_new_one():
    # One seat. A long request runs; after its level-0 quantum it drops a level, and a new
    # short request at level 0 evicts it.
    mlfq = get_policy("mlfq")
    from dataclasses import replace

    policy = replace(mlfq, rank=SkipJoinLevel(levels=3, base_quantum=2, join_tokens=100))
    rows = [(0.0, 4, 20), (3.5, 4, 2)]
    r = simulate(workload(rows), policy, deployment(max_num_seqs=1), cost=LinearCost()).records
    assert r.preemptions[0] == 1 and r.finish[1] < r.finish[0]
    assert MLFQ.preemptive


def test_predicted_sjf_orders_by_score():
    rows = [(0.0, 10, 5)] + [(0.01, 10, 5)] * 3
    scores = np.array([0.0, 3.0, 1.0, 2.0])  # predictor thinks request 2 is shortest
    policy = predicted_sjf("toy", scores)
    r = simulate(workload(rows), policy, deployment(max_num_seqs=1), cost=LinearCost()).records
    assert list(np.argsort(r.first_scheduled)) == [0, 2, 3, 1]
    with pytest.raises(ValueError, match="finite"):
        predicted_sjf("bad", np.array([1.0, np.nan]))


def test_release_times_batch_what_arrived_while_the_scorer_was_busy():
    arrival = np.array([0.0, 0.1, 0.2, 1.0, 1.05, 3.0])
    # scorer free: batch {0} released at 0.5; starts again at 0.5 with {0.1, 0.2} -> 1.0;
    # at 1.0 takes {1.0} -> 1.5 (1.05 arrived after it started); {1.05} -> 2.0; {3.0} -> 3.5
    assert list(release_times(arrival, 0.5)) == [0.5, 1.0, 1.0, 1.5, 2.0, 3.5]
    assert list(release_times(arrival, 0.0)) == list(arrival)


def test_scoring_delay_is_on_the_request_path():
    from dataclasses import replace

    rows = [(0.0, 10, 3), (5.0, 10, 3)]
    plain = simulate(workload(rows), FCFS, deployment(), cost=LinearCost()).records
    scored = simulate(workload(rows), replace(FCFS, scoring_delay=0.25), deployment(),
                      cost=LinearCost()).records
    assert list(scored.arrival) == list(plain.arrival)  # latency counts from arrival
    assert np.allclose(scored.first_token - plain.first_token, 0.25)
    assert np.allclose(scored.first_scheduled, [0.25, 5.25])
