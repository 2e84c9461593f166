"""Prefix caching (llmsim/engine/prefix_cache.py): the pool's invariants step by step, hits
on shared prefixes, the fast simulator against the reference one with caching on, and
caching on reproducing caching off where nothing can hit."""

from __future__ import annotations

import json
from dataclasses import replace
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from llmsim import simulate
from llmsim.engine.config import EngineConfig
from llmsim.engine.prefix_cache import CachingBlockPool, own_key
from llmsim.engine.request import Request
from llmsim.engine.scheduler import Scheduler
from llmsim.policies import FCFS, MLFQ, SJF, SRPT, with_starvation_prevention
from llmsim.policies.oracle import SJF_UNCACHED
from llmsim.traces.block_hashes import LATER, BlockHashes
from tests.helpers import LinearCost, RunLinearCost, deployment, workload

POLICIES = [FCFS, SJF, SRPT, MLFQ, with_starvation_prevention(SJF, 3, 2), SJF_UNCACHED]
COMPARED = ("first_scheduled", "first_token", "finish", "emitted_tokens", "preemptions",
            "recomputed_tokens", "cached_tokens", "replica", "rejected")


def shared_prefix_workload(rows, families, block_tokens, covers_output=False):
    """`rows`: (arrival, prompt, output, family, shared blocks). A request shares the first
    `shared` ids of its family's id sequence (at most what its tokens cover), then has ids
    of its own: requests of a family share prefixes of different lengths."""
    lists, fresh = [], 10_000
    for i, (_, prompt, output, family, shared) in enumerate(rows):
        tokens = prompt + output if covers_output else prompt
        blocks = -(-tokens // block_tokens)
        ids = [family * 1000 + j for j in range(min(shared, blocks))]
        while len(ids) < blocks:
            ids.append(fresh + i * 1000 + len(ids))
        lists.append(ids)
    w = workload([r[:3] for r in rows])
    return replace(w, meta={"hash_ids": BlockHashes.from_lists(lists, block_tokens,
                                                               covers_output)})


shared_rows = st.lists(
    st.tuples(st.floats(0, 30, allow_nan=False), st.integers(1, 200), st.integers(1, 80),
              st.integers(0, 2), st.integers(0, 40)),
    min_size=1, max_size=40,
).map(lambda rows: sorted(rows, key=lambda r: r[0]))

configs = st.fixed_dictionaries({
    "max_num_seqs": st.integers(1, 12),
    "max_num_batched_tokens": st.integers(1, 256),
    "block_size": st.sampled_from([1, 2, 4, 16]),
    "num_gpu_blocks": st.integers(1, 120),
    "num_replicas": st.integers(1, 3),
    "router": st.sampled_from(["round-robin", "least-tokens", "cache-affinity"]),
})


def assert_same(w, cfg, policy, cost_args):
    dep = deployment(enable_prefix_caching=True, **cfg)
    ref = simulate(w, policy, dep, cost=LinearCost(*cost_args), simulator="reference")
    for cost in (LinearCost(*cost_args), RunLinearCost(*cost_args)):
        fast = simulate(w, policy, dep, cost=cost, simulator="fast")
        a, b = ref.records.columns(), fast.records.columns()
        for name in COMPARED:
            np.testing.assert_allclose(b[name].astype(float), a[name].astype(float), rtol=1e-9,
                                       atol=0, equal_nan=True, err_msg=name)
        np.testing.assert_array_equal(ref.records.itl.counts, fast.records.itl.counts)
        for key in ("iterations", "mean_batch_size", "kv_utilization", "busy_fraction",
                    "cached_tokens", "prefix_hit_rate"):
            assert np.isclose(ref.summary[key], fast.summary[key], rtol=1e-9), key
        for r, f in zip(ref.summary["replicas"], fast.summary["replicas"], strict=True):
            assert (r["prefix_hit_tokens"], r["prefix_evictions"]) == \
                (f["prefix_hit_tokens"], f["prefix_evictions"])
    return ref


@settings(max_examples=250, deadline=None)
@given(rows=shared_rows, cfg=configs, policy=st.sampled_from(POLICIES),
       block_tokens=st.sampled_from([1, 4, 16, 32]), covers_output=st.booleans(),
       cost=st.sampled_from([(1.0, 0.0, 0.0), (0.1, 0.002, 0.0003)]))
@example(  # two decoders fill blocks with the same keys; the second is preempted twice and
    # readmitted: its admission sets one key more than its lookup reads (found at random)
    rows=[(11.79, 4, 67, 0, 15), (15.39, 179, 52, 1, 10), (17.68, 5, 56, 0, 7)],
    cfg={"max_num_seqs": 11, "max_num_batched_tokens": 7, "block_size": 1,
         "num_gpu_blocks": 79, "num_replicas": 1, "router": "round-robin"},
    policy=FCFS, block_tokens=4, covers_output=True, cost=(1.0, 0.0, 0.0))
def test_fast_engine_matches_reference_with_prefix_caching(rows, cfg, policy, block_tokens,
                                                           covers_output, cost):
    w = shared_prefix_workload(rows, 3, block_tokens, covers_output)
    assert_same(w, cfg, policy, cost)


def busy_shared_workload(seed: int, n: int):
    """`n` requests 20 ms apart on average, 4 families sharing up to 30 16-token blocks."""
    rng = np.random.default_rng(seed)
    rows = list(zip(np.cumsum(rng.exponential(0.02, n)), rng.integers(1, 400, n),
                    rng.integers(1, 300, n), rng.integers(0, 4, n), rng.integers(0, 30, n),
                    strict=True))
    return shared_prefix_workload(rows, 4, 16)


def test_fast_engine_matches_reference_on_a_busy_shared_pool():
    w = busy_shared_workload(7, 300)
    hit = 0.0
    for policy in POLICIES:
        for cfg in ({"num_gpu_blocks": 300, "block_size": 16},
                    {"num_gpu_blocks": 2000, "max_num_batched_tokens": 512, "max_num_seqs": 64},
                    {"num_gpu_blocks": 700, "num_replicas": 3, "router": "least-tokens"},
                {"num_gpu_blocks": 700, "num_replicas": 3, "router": "cache-affinity"}):
            hit = max(hit, assert_same(w, cfg, policy, (0.005, 2e-5, 1e-7)).summary[
                "prefix_hit_rate"])
    assert hit > 0.2  # the workload does share prefixes


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.integers(1, 200),
                               st.integers(1, 80)), min_size=1, max_size=30)
       .map(lambda rows: sorted(rows, key=lambda r: r[0])),
       cfg=configs, policy=st.sampled_from(POLICIES))
def test_caching_without_shared_prefixes_changes_nothing_but_recomputation(rows, cfg, policy):
    """With no ids, a request can only hit its own blocks, after a preemption: without
    preemptions caching on gives caching off's records exactly."""
    off = simulate(workload(rows), policy, deployment(**cfg), cost=LinearCost(0.1, 0.002))
    on = simulate(workload(rows), policy, deployment(enable_prefix_caching=True, **cfg),
                  cost=LinearCost(0.1, 0.002))
    assert on.summary["cached_tokens"] == 0
    if off.summary["preemptions"] == 0:
        a, b = off.records.columns(), on.records.columns()
        for name in COMPARED:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# -- the pool itself -----------------------------------------------------------------------

def test_a_shared_prefix_hits_and_at_least_one_token_is_computed():
    pool = CachingBlockPool(10, 4)
    sched = Scheduler(EngineConfig(block_size=4, num_gpu_blocks=10), pool, FCFS)
    a = Request(0, 0.0, 12, 1, block_hashes=np.array([1, 2, 3]))
    sched.add(a, 0.0)
    batch = sched.schedule(0.0)
    assert batch.items == [(a, 12)]
    sched.complete(batch, 1.0)  # a is done: its 3 keyed blocks are free, still cached
    assert pool.free_blocks == 10 and pool.keyed_free == 3
    # the same prompt: 2 blocks hit, not 3
    b = Request(1, 1.0, 12, 2, block_hashes=np.array([1, 2, 3]))
    c = Request(2, 1.0, 9, 2, block_hashes=np.array([1, 7]))  # shares one block
    sched.add(b, 1.0)
    sched.add(c, 1.0)
    batch = sched.schedule(1.0)
    assert [(r.id, n) for r, n in batch.items] == [(1, 4), (2, 5)]
    assert (b.computed, c.computed, b.cached, c.cached) == (8, 4, 8, 4)
    assert pool.refs(pool.blocks_of(b)[0]) == 2  # block 1 shared by b and c
    assert pool.free_blocks == 10 - 3 - 2  # b: 2 hits + 1 new; c: 1 shared (held) + 2 new
    pool.check()


def test_only_cache_aware_policies_look_the_prompt_up_on_arrival():
    from llmsim.engine.records import Records
    from llmsim.engine.replica import Replica

    for policy, hint in ((SJF_UNCACHED, 8), (FCFS, 0)):
        pool = CachingBlockPool(10, 4)
        sched = Scheduler(EngineConfig(block_size=4, num_gpu_blocks=10), pool, policy)
        a = Request(0, 0.0, 12, 1, block_hashes=np.array([1, 2, 3]))
        pool.hit(a)
        pool.allocate(a, 12)  # a's 3 blocks are cached
        records = Records(np.zeros(2), np.array([12, 12]), np.array([1, 1]))
        replica = Replica(0, sched, LinearCost(1.0), records, lambda req: None, 100)
        b = Request(1, 0.0, 12, 1, block_hashes=np.array([1, 2, 3]))
        replica.add(b, 0.0)
        assert b.cached_hint == hint  # 2 blocks: the last token is always computed


def test_keys_that_are_not_dense_slot_numbers_are_refused_before_anything_changes():
    import pytest

    for bad in (-1, 1 << 40):
        pool = CachingBlockPool(10, 4)
        first = Request(1, 0.0, 5, 1, block_hashes=np.array([1]))
        first.computed = pool.hit(first)
        pool.allocate(first, 5)  # key 1 cached: the lookups below go past it
        req = Request(0, 0.0, 12, 1, block_hashes=np.array([1, bad]))
        assert pool.peek(req) == 4
        req.computed = pool.hit(req)
        with pytest.raises(ValueError, match="dense slot numbers"):
            pool.allocate(req, 4)
        assert pool.free_blocks == 8 and pool.cached_keys() == [1]
        pool.check()


def test_eviction_takes_keyless_blocks_first_then_the_least_recently_freed_tail_first():
    pool = CachingBlockPool(6, 1)
    sched = Scheduler(EngineConfig(block_size=1, num_gpu_blocks=6), pool, FCFS)
    a = Request(0, 0.0, 3, 1, block_hashes=np.array([10, 11, 12]))
    sched.add(a, 0.0)
    sched.complete(sched.schedule(0.0), 1.0)  # 3 keyed free blocks, in order 12, 11, 10
    assert [pool.key_of(b) for b in pool.keyed_free_blocks()] == [12, 11, 10]
    b = Request(1, 1.0, 5, 1)  # no ids: needs 5 blocks: 3 keyless, then evicts 12 and 11
    sched.add(b, 1.0)
    sched.schedule(1.0)
    assert pool.evictions == 2 and pool.cached_keys() == [10]
    pool.check()


@pytest.mark.parametrize("compiled", [False, None])
def test_dead_entries_past_the_ring_widen_it_and_keep_the_order(compiled):
    """Hits leave dead entries in the free queue until eviction reaches them: here nothing
    evicts, so they pile up past the ring (twice the blocks: 16 entries) and it widens,
    its entries keeping their numbers and order; then a request that needs every block
    evicts through them, tail first, skipping the dead ones. (compiled None: where built.)"""
    pool = CachingBlockPool(8, 4, compiled=compiled)
    sched = Scheduler(EngineConfig(block_size=4, num_gpu_blocks=8), pool, FCFS)
    assert len(pool._lru) == 16
    for i in range(6):  # 4 keyed blocks; each request after the first hits all 4
        req = Request(i, float(i), 17, 1, block_hashes=np.array([1, 2, 3, 4]))
        sched.add(req, float(i))
        sched.complete(sched.schedule(float(i)), float(i) + 0.5)
        assert req.cached == (16 if i else 0) and pool.keyed_free == 4
        pool.check()
    assert pool._lru_tail - pool._lru_head == 24 and len(pool._lru) == 32  # 20 dead
    assert [pool.key_of(b) for b in pool.keyed_free_blocks()] == [4, 3, 2, 1]
    big = Request(6, 6.0, 25, 1)  # 7 blocks: the 4 keyless ones, then evicts 4, 3, 2
    sched.add(big, 6.0)
    sched.schedule(6.0)
    assert pool.evictions == 3 and pool.cached_keys() == [1]
    pool.check()


def test_lockstep_decoders_key_their_blocks_lazily_in_the_order_they_were_scheduled():
    """The fast simulator's decoders set their given keys only when something could see them
    (pool.flush). A duplicate key must then queue behind the holder the step-by-step
    scheduler set first: by the iteration whose token filled the block, then by seat."""
    from llmsim.engine.decoders import DecoderAggregate

    pool = CachingBlockPool(20, 4)
    dec = DecoderAggregate(pool)

    def seated(rid, prompt, keys, seat, chunk=None):
        req = Request(rid, 0.0, prompt, 20, block_hashes=np.array(keys, np.int64))
        req.computed = pool.hit(req)
        pool.allocate(req, chunk or prompt)
        req.feed(chunk or prompt)
        req.seat = seat
        return req

    p = seated(2, 8, [5, 1, 2, 9], seat=1, chunk=4)  # still prefilling: 4 of 8 computed
    d = seated(1, 4, [0, 1, 2], seat=2)  # decoding: its block 1 (key 1) fills 4 steps on
    e = seated(3, 5, [7, 2, 8], seat=3)  # decoding: its block 1 (key 2) fills 3 steps on
    dec.join(d)
    dec.join(e)
    for _ in range(3):
        pool.take(dec.blocks_needed())
        dec.step()
    assert pool.key_of(pool.blocks_of(e)[1]) is None  # due, not set: nobody looked
    dec.ahead = 1  # the next iteration is planned: d's token in it fills d's block 1, and
    pool.take(dec.blocks_needed())
    pool.append(p, 4)  # p's last chunk fills its block 1, key 1 too. p asks the decoders
    # seated before it to key first: e (key 2, full an iteration ago) does; d waits
    first = pool._map.run(np.array([5, 1, 2], np.int64))
    assert first.tolist() == pool.blocks_of(p)[:1] + [pool.blocks_of(p)[1], pool.blocks_of(e)[1]]
    dec.leave(d)  # d's key 1 is set now, behind p's block
    assert pool.key_of(pool.blocks_of(d)[1]) == 1
    assert pool._map.run(np.array([1], np.int64)).tolist() == [pool.blocks_of(p)[1]]
    pool.check()


def test_a_preempted_request_finds_its_own_blocks_again():
    pool = CachingBlockPool(12, 4)
    sched = Scheduler(EngineConfig(max_num_seqs=2, max_num_batched_tokens=64, block_size=4,
                                   num_gpu_blocks=12), pool, FCFS)
    a, b = Request(0, 0.0, 16, 20), Request(1, 0.0, 16, 20)
    sched.add(a, 0.0)
    sched.add(b, 0.0)
    now = 0.0
    for _ in range(20):
        batch = sched.schedule(now)
        if batch.preempted:
            break
        now += 1.0
        sched.complete(batch, now)
    # as tests/test_vllm_differential.py pins for vLLM: B, preempted holding 25 tokens,
    # resumes from its cached blocks and recomputes 13 tokens, not 25
    assert batch.preempted == [b] and b.discarded == 24 and own_key(1, 0) in pool.cached_keys()
    pool.check()
    sched.complete(batch, now + 1.0)
    batch = sched.schedule(now + 1.0)
    while not any(r is b for r, _ in batch.items):
        now += 1.0
        sched.complete(batch, now)
        batch = sched.schedule(now)
    assert (b.cached, b.computed, dict((r.id, n) for r, n in batch.items)[1]) == (0, 12, 13)
    pool.check()


def run_scheduler(w, engine: EngineConfig, policy, check: bool = False, observe=None,
                  compiled: bool | None = None, named: bool = False,
                  private: bool = False) -> CachingBlockPool:
    """Drive one replica's scheduler over `w` with a caching pool whose every "still
    blocked" is confirmed (`ConfirmedPool`), iterations one time unit long, checking the
    pool's invariants at every step if `check` and calling `observe(pool)` after every
    step if given; returns the pool, its `checked` count set. `compiled`: the pool's;
    `named`: its blocks named from the start (never anonymous, see `_name`); `private`:
    requests know which of their keys no other has (`private_from`), as a cluster's do."""
    pool = ConfirmedPool(engine.num_gpu_blocks, engine.block_size, compiled=compiled)
    if named:
        pool._name()
    sched = Scheduler(engine, pool, policy)
    hashes = w.meta["hash_ids"]
    pending = [Request(i, float(w.arrival[i]), int(w.prompt_tokens[i]),
                       int(w.output_tokens[i]),
                       block_hashes=hashes.keys(i, int(w.prompt_tokens[i]),
                                                int(w.output_tokens[i]), engine.block_size))
               for i in range(len(w))]
    if private:
        for r in pending:
            r.private_from = hashes.private_from(r.id, engine.block_size)
    pending = [r for r in pending if sched.can_accept(r)]
    now = 0.0
    for _ in range(20_000):
        while pending and pending[0].arrival <= now:
            sched.add(pending.pop(0), now)
        if not sched.has_work():
            if not pending:
                break
            now = pending[0].arrival
            continue
        batch = sched.schedule(now)
        if check:
            pool.check()
        if observe is not None:
            observe(pool)
        now += 1.0
        sched.complete(batch, now)
        if check:
            pool.check()
        if observe is not None:
            observe(pool)
    assert not sched.has_work() and pool.free_blocks == pool.num_blocks
    return pool


class ConfirmedPool(CachingBlockPool):
    """A caching pool that checks each "still blocked" it answers with a real lookup and
    admission test (which must fail), and counts them (`checked`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.checked = 0

    def blocked(self, req) -> bool:
        if not super().blocked(req):
            return False
        req.computed = self.hit(req)
        assert not self.can_allocate(req, 1), f"request {req.id} was not blocked"
        req.computed = 0
        self.checked += 1
        return True


@settings(max_examples=150, deadline=None)
@given(rows=shared_rows, cfg=configs, policy=st.sampled_from(POLICIES), private=st.booleans())
def test_pool_invariants_hold_at_every_iteration(rows, cfg, policy, private):
    cfg = {k: v for k, v in cfg.items() if k not in ("num_replicas", "router")}
    engine = EngineConfig(enable_prefix_caching=True, **cfg)
    run_scheduler(shared_prefix_workload(rows, 3, 4), engine, policy, check=True,
                  private=private)


@settings(max_examples=120, deadline=None)
@given(rows=shared_rows, cfg=configs, policy=st.sampled_from(POLICIES),
       block_tokens=st.sampled_from([1, 4, 16]), covers_output=st.booleans(),
       simulator=st.sampled_from(["reference", "fast"]))
def test_keys_no_other_request_has_wait_for_free_with_the_same_results(
        rows, cfg, policy, block_tokens, covers_output, simulator):
    """A request's keys past `private_from` are set when it frees its blocks (in the map
    if it is preempted) instead of as they fill: the same records, hits and evictions as
    keying every block as it fills."""
    dep = deployment(enable_prefix_caching=True, **cfg)
    cost = LinearCost(0.1, 0.002, 0.0003)
    lazy = simulate(shared_prefix_workload(rows, 3, block_tokens, covers_output), policy, dep,
                    cost=cost, simulator=simulator)
    # as if another request had every trace block: a fresh workload, whose keys are made
    # with that (a workload's hash ids keep what they worked out)
    everything = property(lambda self: np.full(len(self), 1 << 40, np.int64))
    never = property(lambda self: np.zeros(len(self), np.uint8))  # nor anything left
    with (mock.patch.object(BlockHashes, "_shared_upto", everything),
          mock.patch.object(BlockHashes, "_may_shrink", never)):
        w = shared_prefix_workload(rows, 3, block_tokens, covers_output)
        assert w.meta["hash_ids"].private_from(0, 1) >= 1 << 40
        eager = simulate(w, policy, dep, cost=cost, simulator=simulator)
    a, b = eager.records.columns(), lazy.records.columns()
    for name in COMPARED:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)
    np.testing.assert_array_equal(eager.records.itl.counts, lazy.records.itl.counts)
    for r, f in zip(eager.summary["replicas"], lazy.summary["replicas"], strict=True):
        assert (r["prefix_hit_tokens"], r["prefix_evictions"], r["iterations"]) == \
            (f["prefix_hit_tokens"], f["prefix_evictions"], f["iterations"])


def test_keys_past_the_last_trace_block_another_request_has_are_private():
    h = BlockHashes.from_lists([[1, 2, 3], [1, 2, 4], [5], [], [8, 2, 3]], block_tokens=4)
    # request 0 shares (1, 0), (2, 1) with request 1 and (2, 1), (3, 2) with request 4
    assert [h.private_from(i, 2) for i in range(5)] == [6, 4, 0, 0, 6]
    assert [h.private_from(i, 4) for i in range(5)] == [3, 2, 0, 0, 3]
    assert h.private_from(1, 3) == 2 * 4 // 3  # engine blocks 0, 1 end in trace block 0, 1


def test_keys_no_request_left_can_look_up_are_private_as_a_request_arrives():
    h = BlockHashes.from_lists([[1, 2, 3], [1, 2, 4], [5], [], [8, 2, 3]], block_tokens=4)
    # per trace block: the latest request before it that has it, or LATER (one after it has)
    assert h._sharers.tolist() == [LATER] * 3 + [0, LATER, -1] + [-1] + [-1, 1, 0]
    keys = h.engine_keys(4)
    # every request before the watermark is gone: request 4 shares (2, 1) with 0 and 1,
    # (3, 2) with 0; request 1 shares (2, 1) with request 4, which is still to come
    assert [keys.private_from(4, w) for w in (-1, 0, 1, 2, 5)] == [3, 3, 2, 0, 0]
    assert [keys.private_from(1, w) for w in (-1, 1, 5)] == [2, 2, 2]
    assert [keys.private_from(0, w) for w in (-1, 5)] == [3, 3]


def test_a_hit_beside_a_free_elsewhere_can_unblock_the_head():
    """Found by the test above in CI: between two of the head's failed admissions, another
    request hit blocks of the head's cached run (taking them out of the free queue: what
    the head needs and what is free, both one lower) while blocks were freed elsewhere
    (free one higher): the free count is back where it was, the need is lower, and the
    head fits. `blocked` must look again after such a touch."""
    rows = [(0.0, 1, 1, 0, 0)] * 6 + [
        (0.0, 1, 24, 0, 0), (0.0, 25, 32, 0, 0), (0.0, 141, 51, 0, 0), (0.0, 158, 51, 0, 24),
        (0.0, 177, 51, 0, 24), (1.0, 160, 36, 0, 20), (1.0, 73, 36, 0, 4), (1.0, 145, 4, 0, 0)]
    engine = EngineConfig(enable_prefix_caching=True, max_num_seqs=3,
                          max_num_batched_tokens=36, block_size=16, num_gpu_blocks=24)
    pool = run_scheduler(shared_prefix_workload(rows, 3, 4), engine,
                         with_starvation_prevention(SJF, 3, 2), check=True)
    assert pool.checked > 0  # it did answer "still blocked", and rightly


def test_a_head_known_to_be_blocked_is_blocked():
    """The scheduler skips the lookup of a head of the queue that failed to fit and could
    not fit since (`blocked`): a busy pool asks that often, and every answer holds. The
    small case: a decoder fills a block whose key the blocked head shares, with no new
    block taken (found at random)."""
    rows = [(0.668, 53, 6, 0, 37), (0.701, 5, 2, 1, 39), (2.228, 9, 3, 1, 35),
            (2.707, 50, 2, 1, 17), (2.829, 7, 2, 1, 33)]
    engine = EngineConfig(enable_prefix_caching=True, num_gpu_blocks=32, block_size=2,
                          max_num_batched_tokens=12, max_num_seqs=5)
    assert run_scheduler(shared_prefix_workload(rows, 2, 1, True), engine, FCFS).checked
    w = busy_shared_workload(3, 200)
    engine = EngineConfig(enable_prefix_caching=True, num_gpu_blocks=300)
    assert sum(run_scheduler(w, engine, policy).checked
               for policy in (FCFS, SJF_UNCACHED)) > 100


# -- workloads with prefixes ---------------------------------------------------------------

def test_trace_block_ids_map_to_engine_blocks_by_the_trace_block_of_their_last_token():
    """Mooncake's ids name 512-token blocks; engine block j (16 tokens) takes the id of the
    trace block holding its last token; only blocks full of prompt tokens get keys."""
    h = BlockHashes.from_lists([[7, 9], [7, 3], [8, 9]], 512)
    a, b = h.keys(0, 600, 50, 16).tolist(), h.keys(1, 530, 50, 16).tolist()
    assert len(a) == 37 and len(b) == 33  # 600 // 16, 530 // 16: the last block is partial
    assert len(set(a)) == 37 and min(a) >= 0  # distinct dense slot numbers
    assert a[:32] == b[:32] and a[32] != b[32]  # the same first 512 tokens, then not
    # a 48-token block straddling two trace blocks (tokens 480..527) takes the second's id:
    # request 2 shares that id (at the same place), not the first
    a48, c48 = h.keys(0, 600, 50, 48).tolist(), h.keys(2, 600, 50, 48).tolist()
    assert a48[10] == c48[10] and a48[9] != c48[9]
    assert not set(a48) & set(h.keys(1, 600, 50, 48).tolist()[10:])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), max_size=6), min_size=1, max_size=8),
       st.sampled_from([0, 1 << 30]))
def test_ids_are_numbered_by_their_distinct_id_and_place_in_sorted_order(lists, shift):
    """Whether or not an id sits at one place only (the shortcut without sorting), and
    whatever the ids' size: the numbers are the ranks among the distinct (id, place)."""
    h = BlockHashes.from_lists([[i + shift for i in ids] for ids in lists], 512)
    pairs = [(i, place) for r in range(len(h)) for place, i in enumerate(h.of(r).tolist())]
    rank = {pair: n for n, pair in enumerate(sorted(set(pairs)))}
    assert h._numbers.tolist() == [rank[pair] for pair in pairs]


def test_sessions_resend_the_previous_turn_and_share_system_prompts():
    from llmsim.traces.sessions import SessionSpec, synthesize_sessions

    spec = SessionSpec(sessions=30, session_rate=0.5, system_prompts=2, system_tokens=100,
                       think_s=1000.0)  # turns of a session far apart: sorted by session
    w = synthesize_sessions(spec, np.random.default_rng(1))
    h = w.meta["hash_ids"]
    assert h.covers_output and len(h) == len(w) > 30
    keys = [h.keys(i, int(w.prompt_tokens[i]), int(w.output_tokens[i]), 16).tolist()
            for i in range(len(w))]
    resent = 0
    for i in range(len(w)):
        for j in range(i):  # an earlier turn whose prompt and answer this prompt starts with
            if int(w.prompt_tokens[j] + w.output_tokens[j]) <= int(w.prompt_tokens[i]):
                k = keys[j]
                if keys[i][:len(k) - 1] == k[:-1] and k[:6] != keys[i][6:12]:
                    resent += 1
                    break
    assert resent >= len(w) - 30 - 5  # nearly every later turn resends an earlier one
    first = {tuple(k[:6]) for k in keys}  # 100 tokens: 6 full blocks of system prompt
    assert len(first) == 2


def test_sessions_hit_the_cache_and_both_simulators_agree():
    from llmsim.traces.sessions import SessionSpec, synthesize_sessions

    w = synthesize_sessions(SessionSpec(sessions=25, session_rate=2.0, think_s=2.0,
                                        system_tokens=300), np.random.default_rng(2))
    for cfg in ({"num_gpu_blocks": 400, "max_num_seqs": 8, "max_num_batched_tokens": 512},
                {"num_gpu_blocks": 3000}):
        ref = assert_same(w, cfg, FCFS, (0.01, 1e-4, 1e-6))
        assert ref.summary["prefix_hit_rate"] > 0.3
        off = simulate(w, FCFS, deployment(**cfg, enable_prefix_caching=False),
                       cost=LinearCost(0.01, 1e-4, 1e-6))
        assert ref.summary["ttft"]["mean"] < off.summary["ttft"]["mean"]


def test_session_trace_round_trips_through_parquet_and_the_cli(tmp_path):
    from typer.testing import CliRunner

    from llmsim.cli import app
    from llmsim.traces.loaders import load_trace

    runner = CliRunner(env={"COLUMNS": "160"})
    out = tmp_path / "s.parquet"
    res = runner.invoke(app, ["trace", "sessions", str(out), "--sessions", "20"])
    assert res.exit_code == 0, res.output
    w = load_trace(out)
    assert w.meta["hash_ids"].covers_output and w.meta["hash_ids"].block_tokens == 16
    res = runner.invoke(app, ["run", "--trace", str(out), "--enable-prefix-caching",
                              "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "prefix" in res.output  # the table's hit-rate column, shown when anything hit
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["fcfs"]
    assert summary["cached_tokens"] > 0 and 0 < summary["prefix_hit_rate"] < 1
    assert f"{summary['prefix_hit_rate']:.0%}" in res.output
    res = runner.invoke(app, ["trace", "sessions", str(tmp_path / "s.csv")])
    assert res.exit_code == 2 and "must end in .parquet" in res.output


def test_cache_affinity_routes_to_the_replica_holding_the_prefix_unless_it_is_overloaded():
    from llmsim.engine.router import CacheAffinity

    class Replica:
        def __init__(self, cached_keys, outstanding):
            self.pool = CachingBlockPool(100, 4)
            keys = np.array(cached_keys, np.int64)
            req = Request(9, 0.0, 4 * len(keys) + 1, 1, block_hashes=keys)
            self.pool.hit(req)
            self.pool.allocate(req, req.prompt_tokens)
            self.outstanding_tokens = outstanding

    req = Request(0, 0.0, 20, 1, block_hashes=np.array([1, 2, 3, 4, 5]))
    replicas = [Replica([], 0), Replica([1, 2], 100), Replica([1, 2, 3], 200)]
    assert CacheAffinity(slack=0.5, margin=1000)(req, replicas) == 2
    replicas[2].outstanding_tokens = 5000  # above 1.5 x 0 + 1000: the guard steps in
    assert CacheAffinity(slack=0.5, margin=1000)(req, replicas) == 1
    assert CacheAffinity(slack=0.5, margin=50)(req, replicas) == 0  # least-tokens


def test_selected_rows_keep_their_block_ids_and_misaligned_ids_are_refused():
    import pytest

    rows = [(0.0, 40, 5, 0, 3), (1.0, 40, 5, 1, 3), (2.0, 40, 5, 0, 3)]
    w = shared_prefix_workload(rows, 2, 16)
    picked = w.select(np.array([0, 2]))
    assert picked.meta["hash_ids"].of(1).tolist() == w.meta["hash_ids"].of(2).tolist()
    ref = simulate(picked, FCFS, deployment(enable_prefix_caching=True), cost=LinearCost(10.0))
    assert ref.records.cached_tokens.tolist() == [0, 32]  # the same family: 2 blocks hit
    bad = replace(w, meta={"hash_ids": w.meta["hash_ids"].take(np.array([0, 1]))})
    with pytest.raises(ValueError, match="hash_ids cover 2 requests"):
        simulate(bad, FCFS, deployment(enable_prefix_caching=True), cost=LinearCost(10.0))
