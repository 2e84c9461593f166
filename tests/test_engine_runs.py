"""The decode-run loop compiled (llmsim/engine/_runs.c) against its Python original
(fast._affine_run): the same results to the last bit, call by call and run by run.

Skipped where the module was not built (no C compiler: llmsim then runs the Python loop);
CI sets LLMSIM_REQUIRE_COMPILED=1, so there a missing build fails instead."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim import simulate
from llmsim.engine import fast
from llmsim.engine.histogram import LogHistogram
from llmsim.policies import FCFS, SJF
from tests.helpers import RunLinearCost, deployment, workload

compiled = fast.compiled_affine_run
if compiled is None:
    if os.environ.get("LLMSIM_REQUIRE_COMPILED"):
        raise ImportError("llmsim.engine._runs was not built (setup.py); "
                          "LLMSIM_REQUIRE_COMPILED=1 asks for it")
    pytest.skip("llmsim.engine._runs not built: the Python loop runs", allow_module_level=True)

EDGES = LogHistogram().edges

runs = st.fixed_dictionaries({
    "k": st.integers(0, 400),
    "until": st.one_of(st.just(math.inf), st.floats(0, 50), st.integers(0, 30)),  # int:
    # exactly the end of that iteration (a tie: the one ending at `until` completes)
    "now": st.floats(0, 10),
    "context": st.integers(0, 10**9),
    "n": st.integers(1, 256),
    "a": st.floats(1e-6, 0.1),
    "b": st.one_of(st.just(0.0), st.floats(1e-12, 1e-6)),
    "block_size": st.sampled_from([1, 2, 16, 100]),
    "needs": st.lists(st.integers(0, 40), min_size=100, max_size=100),
    "used": st.integers(0, 5000),
    "spare": st.integers(0, 3000),
    "binned": st.sampled_from(["fresh", "somewhere"]),
})


def call(run, r: dict):
    """(returned, bins, binned) of one call on fresh copies of the mutable arguments."""
    bs = r["block_size"]
    by_phase = r["needs"][:bs]
    bins = [0] * (len(EDGES) + 1)
    binned = [0, 0.0, -1.0] if r["binned"] == "fresh" else [900, EDGES[899], EDGES[900]]
    phase = r["context"] % bs
    until = r["until"]
    if isinstance(until, int):  # the end of iteration `until`, summed as the loop sums it
        end, context = r["now"], r["context"]
        for _ in range(until + 1):
            end += r["a"] + r["b"] * context
            context += r["n"]
        until = end
    out = run(r["k"], until, r["now"], r["context"], r["n"], r["a"], r["b"], phase,
              by_phase, r["used"], r["used"] + r["spare"], binned, bins, EDGES)
    return out, bins, binned


@settings(max_examples=3000, deadline=None)
@given(r=runs)
def test_the_compiled_loop_returns_what_the_python_loop_returns(r):
    ours, bins, binned = call(compiled, r)
    theirs, their_bins, their_binned = call(fast._affine_run, r)
    assert ours == theirs  # floats compared exactly: the same operations in the same order
    assert bins == their_bins
    assert binned == their_binned


def test_a_run_that_crosses_many_itl_bins_and_ends_in_flight():
    r = {"k": 100_000, "until": 400.0, "now": 0.0, "context": 0, "n": 64, "a": 1e-3,
         "b": 3e-9, "block_size": 16, "needs": [0] * 15 + [64] + [0] * 84, "used": 0,
         "spare": 10**6, "binned": "fresh"}
    ours, bins, binned = call(compiled, r)
    assert ours == call(fast._affine_run, r)[0]
    assert ours[4] is not None and ours[0] < r["k"]  # stopped by `until`, one in flight
    assert sum(1 for c in bins if c) > 10  # the gaps grew through many bins


@pytest.mark.parametrize("policy", [FCFS, SJF])
def test_the_simulator_gives_the_same_records_with_either_loop(policy, monkeypatch):
    rng = np.random.default_rng(7)
    n = 300
    rows = list(zip(np.cumsum(rng.exponential(2.0, n)), rng.integers(1, 800, n),
                    rng.integers(50, 2000, n), strict=True))
    dep = deployment(num_gpu_blocks=1500, block_size=16, max_num_seqs=16, num_replicas=2,
                     router="least-tokens")
    cost = RunLinearCost(0.01, 1e-4, 2e-6)
    with_c = simulate(workload(rows), policy, dep, cost=cost, simulator="fast")
    monkeypatch.setattr(fast, "compiled_affine_run", None)
    with_python = simulate(workload(rows), policy, dep, cost=cost, simulator="fast")
    a, b = with_c.records.columns(), with_python.records.columns()
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert with_c.records.itl.counts.tolist() == with_python.records.itl.counts.tolist()
    assert with_c.summary == with_python.summary
    assert (with_c.config["decode_run_loop"], with_python.config["decode_run_loop"]) == \
        ("compiled", "python")
