"""The prefix-caching pool's anonymous start (prefix_cache.CachingBlockPool._name): while no
block has a key anybody can look up, the pool keeps counts, as BlockPool does, and names
its blocks when the first such key comes (a request with given keys, or a preemption).
Against a pool whose blocks are named from the start: the same counts, hits, evictions and
keys, the free queue's in order, step by step; the same simulation; the same cost as
caching off where requests have no ids."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim import simulate
from llmsim.engine import prefix_cache
from llmsim.engine.config import EngineConfig
from llmsim.engine.prefix_cache import CachingBlockPool
from llmsim.engine.request import Request
from llmsim.policies import FCFS, SJF, SRPT
from llmsim.traces.block_hashes import BlockHashes
from tests.helpers import RunLinearCost, deployment
from tests.test_prefix_caching import (
    COMPARED,
    POLICIES,
    busy_shared_workload,
    configs,
    run_scheduler,
    shared_prefix_workload,
    shared_rows,
)


def without_ids(w, idless):
    """`w` with no ids for the requests where `idless[i]` (Azure's traces have none)."""
    h = w.meta["hash_ids"]
    lists = [[] if idless[i] else h.ids[h.offsets[i]:h.offsets[i + 1]].tolist()
             for i in range(len(w))]
    return replace(w, meta={"hash_ids": BlockHashes.from_lists(lists, h.block_tokens,
                                                               h.covers_output)})


def observed(pool: CachingBlockPool) -> tuple:
    """What the pool's users and vLLM's see, and the keys: each request's block count and
    their keys, the free queue's keys in order (nothing else tells blocks apart)."""
    if pool.anonymous:  # no block has a key; the queue's keyed part holds DEAD ones
        held = {rid: [None] * n for rid, n in pool._held.items()}
        queue = ["dead"] * pool.keyed_free
    else:
        held = {rid: [pool.key_of(b) for b in pool.blocks_of(Request(rid, 0.0, 1, 1))]
                for rid in pool._held}
        queue = [pool.key_of(b) for b in pool.keyed_free_blocks()]
    pool.check()
    return (pool.free_blocks, pool.keyed_free, pool.evictions, pool.hit_tokens, held, queue)


def steps(w, engine: EngineConfig, policy, named: bool) -> tuple[list[tuple], list[int]]:
    seen: list[tuple] = []
    anonymous: list[int] = []  # steps the pool was still anonymous
    run_scheduler(w, engine, policy, named=named,
                  observe=lambda p: (seen.append(observed(p)), anonymous.append(p.anonymous)))
    return seen, anonymous


@settings(max_examples=150, deadline=None)
@given(rows=shared_rows, cfg=configs, policy=st.sampled_from(POLICIES),
       block_tokens=st.sampled_from([1, 4, 16]), lead=st.integers(0, 40),
       idless=st.lists(st.booleans(), min_size=40, max_size=40))
def test_an_anonymous_start_leaves_what_a_named_pool_leaves(rows, cfg, policy, block_tokens,
                                                            lead, idless):
    # the first `lead` requests have no ids, later ones at random: runs that stay anonymous,
    # and runs named busy (DEAD blocks queued, requests mid-prompt); small pools preempt
    cfg = {k: v for k, v in cfg.items() if k not in ("num_replicas", "router")}
    engine = EngineConfig(enable_prefix_caching=True, **cfg)
    w = without_ids(shared_prefix_workload(rows, 3, block_tokens),
                    [i < lead or idless[i] for i in range(len(rows))])
    seen, anonymous = steps(w, engine, policy, named=False)
    expected, never = steps(w, engine, policy, named=True)
    assert seen == expected
    assert not any(never) and anonymous == sorted(anonymous, reverse=True)  # named once


def test_a_busy_anonymous_pool_is_named_with_its_queue_as_it_was():
    pool, named = CachingBlockPool(8, 4), CachingBlockPool(8, 4)
    named._name()
    a, b = Request(0, 0.0, 9, 1), Request(1, 0.0, 13, 4)  # no ids: 3 and 4 blocks
    c = Request(2, 0.0, 12, 1, block_hashes=np.array([5, 6, 7], np.int64))
    for p in (pool, named):
        for req in (a, b):
            req.computed = p.hit(req)
            assert p.can_allocate(req, req.prompt_tokens)
            p.allocate(req, req.prompt_tokens)
        a.emitted = 1
        p.free(a)  # done: 2 full blocks DEAD at the queue's tail, its third keyless
        assert (p.free_blocks, p.keyed_free) == (4, 2)
        assert p.anonymous == (p is pool)
        p.check()
        c.computed = p.hit(c)
        assert c.computed == 0 and p.can_allocate(c, 12)
        p.allocate(c, 12)  # keyless blocks first (2), then evicts one
        assert (p.free_blocks, p.keyed_free, p.evictions) == (1, 1, 1)
        assert not p.anonymous
        assert [p.key_of(x) for x in p.keyed_free_blocks()] == ["dead"]
        assert [p.key_of(x) for x in p.blocks_of(c)] == [5, 6, 7]
        assert p.blocks_of(b) == [None] * 4  # no keys: no ids
        assert len(set(p.blocks_of(c))) == 3 and p.refs(p.blocks_of(c)[0]) == 1
        p.check()
        for req in (a, b):
            req.computed, req.emitted = 0, 0


def test_a_preemption_names_the_blocks_and_the_request_finds_its_own_again():
    pool = CachingBlockPool(12, 4)
    a = Request(0, 0.0, 10, 5)
    a.computed = pool.hit(a)
    pool.allocate(a, 10)
    pool.free(a)  # preempted (not done): its 2 full blocks get own keys
    assert not pool.anonymous and pool.keyed_free == 2
    assert pool.hit(a) == 8
    pool.check()


def simulations(w, policy, dep, simulator, monkeypatch):
    """The simulation with the pool as it is, and with its blocks named from the start."""
    cost = RunLinearCost(0.005, 2e-5, 1e-7)
    as_is = simulate(w, policy, dep, cost=cost, simulator=simulator)
    with monkeypatch.context() as m:
        m.setattr(prefix_cache, "NAMED_FROM_START", True)
        named = simulate(w, policy, dep, cost=cost, simulator=simulator)
    return as_is, named


@pytest.mark.parametrize("simulator", ["fast", "reference"])
@pytest.mark.parametrize("policy", [FCFS, SJF, SRPT])
def test_the_simulation_is_the_same_anonymous_or_named(simulator, policy, monkeypatch):
    rng = np.random.default_rng(4)
    w = busy_shared_workload(11, 500)
    # the first 250 without ids (named busy), then one in three
    idless = [i < 250 or rng.random() < 1 / 3 for i in range(len(w))]
    for cfg in ({"num_gpu_blocks": 300}, {"num_gpu_blocks": 900, "max_num_seqs": 16},
                {"num_gpu_blocks": 700, "num_replicas": 3, "router": "cache-affinity"}):
        dep = deployment(enable_prefix_caching=True, block_size=16, **cfg)
        as_is, named = simulations(without_ids(w, idless), policy, dep, simulator, monkeypatch)
        a, b = as_is.records.columns(), named.records.columns()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert results(as_is.summary) == results(named.summary)
        assert as_is.summary["prefix_hit_rate"] > 0.05


def results(summary: dict) -> dict:
    """The summary without how the fast simulator got there: anonymous, it runs decoders
    on past a head stuck behind the free blocks (fewer, longer decode runs)."""
    return {**summary, "replicas": [{k: v for k, v in r.items() if k != "decode_runs"}
                                    for r in summary["replicas"]]}


def test_without_ids_caching_on_runs_as_caching_off_and_stays_anonymous():
    """No ids, no preemption: the pool never names its blocks, and the fast simulator takes
    the same decode runs as with caching off (its waiting head stuck behind full seats or
    the free blocks), for the same records."""
    from llmsim.engine.fast import FastCluster
    from llmsim.engine.router import RoundRobin

    rng = np.random.default_rng(2)
    n = 400
    w = replace(busy_shared_workload(3, n), meta={})  # no ids at all
    w = replace(w, prompt_tokens=rng.integers(100, 300, n), output_tokens=rng.integers(50, 150, n))
    clusters = {caching: FastCluster(w, FCFS, RunLinearCost(0.005, 2e-5, 1e-7),
                                     EngineConfig(block_size=16, num_gpu_blocks=4000,
                                                  enable_prefix_caching=caching),
                                     4000, RoundRobin())
                for caching in (True, False)}
    on, off = (clusters[c].run().columns() for c in (True, False))
    for name in COMPARED:
        np.testing.assert_array_equal(on[name], off[name], err_msg=name)
    assert not on["preemptions"].any()
    replicas = [clusters[c].replicas[0] for c in (True, False)]
    assert replicas[0].pool.anonymous and replicas[0].pool.caching
    assert replicas[0].decode_runs == replicas[1].decode_runs > 100
    assert replicas[0].pool.evictions > 0  # finished requests' DEAD blocks handed out again
