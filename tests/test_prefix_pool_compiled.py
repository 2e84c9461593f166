"""The prefix-caching pool's per-block steps compiled (llmsim/engine/_pool.c) against its
NumPy original (prefix_cache.py with compiled=False): the same pool, step by step, and the
same simulation.

Skipped where the module was not built (no C compiler: llmsim then runs the NumPy steps);
CI sets LLMSIM_REQUIRE_COMPILED=1, so there a missing build fails instead."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from llmsim import simulate
from llmsim.engine import prefix_cache
from llmsim.engine.config import EngineConfig
from llmsim.engine.prefix_cache import CachingBlockPool
from llmsim.engine.request import Request
from llmsim.policies import FCFS, SJF, SRPT
from tests.helpers import RunLinearCost, deployment
from tests.test_prefix_caching import (
    POLICIES,
    busy_shared_workload,
    configs,
    run_scheduler,
    shared_prefix_workload,
    shared_rows,
)

if prefix_cache.CompiledArrays is None:
    if os.environ.get("LLMSIM_REQUIRE_COMPILED"):
        raise ImportError("llmsim.engine._pool was not built (setup.py); "
                          "LLMSIM_REQUIRE_COMPILED=1 asks for it")
    pytest.skip("llmsim.engine._pool not built: the NumPy steps run", allow_module_level=True)


def state(pool: CachingBlockPool) -> tuple:
    """What the pool holds: counts, each request's blocks, the free queue in order, every
    cached key's holders (given keys in the map, own keys), and the arrays both write the
    same way: each block's references, cell in the map and entry number in the queue."""
    pool.check()
    return (pool.free_blocks, pool.keyed_free, pool.evictions, pool.hit_tokens,
            {rid: pool.blocks_of(Request(rid, 0.0, 1, 1)) for rid in sorted(pool._reqs)},
            pool.keyed_free_blocks(), pool._map.holders(), dict(pool._own),
            pool._refs.tolist(), pool._cell.tolist(), pool._seq.tolist())


def states(w, engine: EngineConfig, policy, compiled: bool) -> list[tuple]:
    """The pool's state after every scheduler step over `w` (one replica)."""
    seen: list[tuple] = []
    pool = run_scheduler(w, engine, policy, observe=lambda p: seen.append(state(p)),
                         compiled=compiled)
    assert (pool._c is not None) == compiled
    return seen


@settings(max_examples=150, deadline=None)
@given(rows=shared_rows, cfg=configs, policy=st.sampled_from(POLICIES),
       block_tokens=st.sampled_from([1, 4, 16]), covers_output=st.booleans())
def test_the_compiled_steps_leave_the_pool_the_numpy_steps_leave(rows, cfg, policy,
                                                                  block_tokens, covers_output):
    # small pools preempt (own keys), families admitted together hold one key twice
    cfg = {k: v for k, v in cfg.items() if k not in ("num_replicas", "router")}
    engine = EngineConfig(enable_prefix_caching=True, **cfg)
    w = shared_prefix_workload(rows, 3, block_tokens, covers_output)
    assert states(w, engine, policy, True) == states(w, engine, policy, False)


def test_keys_over_many_pages_grow_and_reclaim_the_map_the_same_way():
    """Keys thousands apart: every insertion maps new pages, the map's spare rows run out
    (reclaimed, then doubled) and its page index grows; the compiled steps hand those cases
    to NumPy and go on from the arrays it replaced."""
    rng = np.random.default_rng(3)
    pools = [CachingBlockPool(400, 4, compiled=c) for c in (True, False)]
    live: dict[int, list[Request]] = {}  # request id -> it, in each pool
    for i in range(300):
        family, n = int(rng.integers(6)), int(rng.integers(1, 30))
        keys = family * 5_000_000 + np.arange(n, dtype=np.int64) * int(rng.integers(1, 4096))
        if rng.random() < 0.5:  # a prompt of its own
            keys = keys + (i + 7) * 4_000_000
        reqs = [Request(i, 0.0, 4 * n + 9, 5, block_hashes=keys) for _ in pools]  # 2 blocks more:
        # a preempted one (not done) gives them own keys
        for pool, req in zip(pools, reqs, strict=True):
            req.computed = pool.hit(req)
            if pool.can_allocate(req, req.prompt_tokens - req.computed):
                pool.allocate(req, req.prompt_tokens - req.computed)
                live[i] = reqs
        assert state(pools[0]) == state(pools[1])
        while len(live) > 3 or (live and rng.random() < 0.3):
            rid = list(live)[int(rng.integers(len(live)))]
            done = bool(rng.random() < 0.7)
            for pool, req in zip(pools, live.pop(rid), strict=True):
                req.emitted = req.output_tokens if done else 0
                pool.free(req)
            assert state(pools[0]) == state(pools[1])
    assert pools[0]._map.spare_n != 14 and len(pools[0]._map.row_page) > 16  # it grew


key_runs = st.lists(st.tuples(st.integers(0, 3 << 10), st.integers(1, 40)), min_size=1,
                    max_size=80)  # (first key, length): runs crossing a page's end too


@settings(max_examples=60, deadline=None)
@given(requests=st.lists(st.tuples(key_runs, st.booleans()), min_size=1, max_size=6))
@example(requests=[([(50 * k, 3) for k in range(70)], True),  # 70 runs, 4 pages
                   ([(50 * k + 1, 4) for k in range(70)], False)])  # overlapping: held keys
def test_keys_in_runs_are_inserted_as_numpy_inserts_them(requests):
    """The compiled insert works run by run (consecutive keys in one page): runs crossing
    a page's end, more runs than it keeps the ends of (64), and runs with a key another
    request holds (NumPy's case) leave the pool NumPy's steps leave."""
    pools = [CachingBlockPool(10_000, 1, compiled=c) for c in (True, False)]  # 3 held at most,
    # each of at most 3,112 keys and one more block
    for i, (runs, done) in enumerate(requests):
        keys = np.array(list(dict.fromkeys(k for a, n in runs for k in range(a, a + n))))
        reqs = [Request(i, 0.0, len(keys) + 1, 1, block_hashes=keys) for _ in pools]
        for pool, req in zip(pools, reqs, strict=True):
            req.computed = pool.hit(req)
            assert pool.can_allocate(req, req.prompt_tokens - req.computed)
            pool.allocate(req, req.prompt_tokens - req.computed)
        assert state(pools[0]) == state(pools[1])
        if i % 2:  # every other one leaves, done or preempted (own keys)
            for pool, req in zip(pools, reqs, strict=True):
                req.emitted = req.output_tokens if done else 0
                pool.free(req)
            assert state(pools[0]) == state(pools[1])


@pytest.mark.parametrize("simulator", ["fast", "reference"])
@pytest.mark.parametrize("policy", [FCFS, SJF, SRPT])
def test_the_simulator_gives_the_same_records_with_either_pool(simulator, policy, monkeypatch):
    from llmsim.traces.sessions import SessionSpec, synthesize_sessions

    sessions = synthesize_sessions(SessionSpec(sessions=40, session_rate=4.0, think_s=1.0,
                                               system_tokens=300), np.random.default_rng(5))
    for w, cfg in ((busy_shared_workload(11, 400), {"num_gpu_blocks": 400}),
                   (sessions, {"num_gpu_blocks": 500, "max_num_seqs": 12,
                               "num_replicas": 2, "router": "cache-affinity"})):
        dep = deployment(enable_prefix_caching=True, block_size=16, **cfg)
        cost = RunLinearCost(0.005, 2e-5, 1e-7)
        with_c = simulate(w, policy, dep, cost=cost, simulator=simulator)
        with monkeypatch.context() as m:
            m.setattr(prefix_cache, "CompiledArrays", None)
            with_numpy = simulate(w, policy, dep, cost=cost, simulator=simulator)
        a, b = with_c.records.columns(), with_numpy.records.columns()
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert with_c.summary == with_numpy.summary
        assert (with_c.config["prefix_pool_steps"], with_numpy.config["prefix_pool_steps"]) \
            == ("compiled", "numpy")
        assert with_c.summary["prefix_hit_rate"] > 0.1


def test_a_pool_asked_for_the_compiled_steps_without_them_says_so(monkeypatch):
    monkeypatch.setattr(prefix_cache, "CompiledArrays", None)
    with pytest.raises(RuntimeError, match="not built"):
        CachingBlockPool(10, 4, compiled=True)
    assert CachingBlockPool(10, 4)._c is None


def test_read_only_keys_are_read_and_other_integer_widths_refused_with_a_reason():
    keys = np.arange(3, dtype=np.int64)
    keys.flags.writeable = False  # keys a trace keeps in read-only memory
    pools = [CachingBlockPool(8, 4, compiled=c) for c in (True, False)]
    for pool in pools:
        for rid in (0, 1):
            req = Request(rid, 0.0, 13, 2, block_hashes=keys)
            req.computed = pool.hit(req)
            assert pool.can_allocate(req, 13 - req.computed)
            pool.allocate(req, 13 - req.computed)
    assert state(pools[0]) == state(pools[1]) and pools[0].hit_tokens == 12
    with pytest.raises(TypeError, match="keys: a 1-D contiguous array of 8-byte integers"):
        pools[0]._c.run(keys.astype(np.int32), 3, pools[0]._out)


@settings(max_examples=200, deadline=None)
@given(marked=st.lists(st.integers(0, 63), max_size=8),
       keys=st.lists(st.integers(-(1 << 40), 1 << 40), max_size=20))
def test_the_compiled_watch_test_is_numpys(marked, keys):
    from llmsim.engine._pool import watched

    watch = np.zeros(64, np.int32)
    watch[marked] = 1
    keys = np.array(keys, np.int64)
    assert watched(watch, keys) == bool(watch[keys & 63].any())


@settings(max_examples=150, deadline=None)
@given(lists=st.lists(st.lists(st.integers(0, 30), max_size=12), min_size=1, max_size=8),
       block_tokens=st.sampled_from([1, 3, 16, 512]), block_size=st.sampled_from([1, 4, 16]),
       covers_output=st.booleans(), data=st.data())
def test_the_compiled_key_gather_and_scan_are_numpys(lists, block_tokens, block_size,
                                                     covers_output, data):
    from llmsim.engine import prefix_keys
    from llmsim.traces.block_hashes import BlockHashes

    h = BlockHashes.from_lists(lists, block_tokens, covers_output)
    one_pass, prefix_keys.sharers = prefix_keys.sharers, None
    try:
        numpys = BlockHashes.from_lists(lists, block_tokens, covers_output)
        numpys = numpys._sharers, numpys._shared_upto
    finally:
        prefix_keys.sharers = one_pass
    np.testing.assert_array_equal(h._sharers, numpys[0])
    np.testing.assert_array_equal(h._shared_upto, numpys[1])
    for i in range(len(lists)):
        prompt, output = data.draw(st.integers(1, 5000)), data.draw(st.integers(1, 500))
        compiled = h.keys(i, prompt, output, block_size)
        gather, prefix_keys.make_keys = prefix_keys.make_keys, None
        try:
            numpy = h.keys(i, prompt, output, block_size)
        finally:
            prefix_keys.make_keys = gather
        assert (compiled is None) == (numpy is None)
        if compiled is not None:
            np.testing.assert_array_equal(compiled, numpy)
        keys, watermark = h.engine_keys(block_size), data.draw(st.integers(-1, len(lists)))
        compiled_from = keys.private_from(i, watermark)
        scan, prefix_keys.scan_shared = prefix_keys.scan_shared, None
        try:
            assert keys.private_from(i, watermark) == compiled_from
        finally:
            prefix_keys.scan_shared = scan


def test_a_reclaim_keeps_the_empty_rows_of_the_pages_being_inserted_into():
    """The map's spare rows run out while an insertion maps a new page: the compiled insert
    reclaims the empty rows, but not the one of a page the same insertion writes into."""
    pools = [CachingBlockPool(20, 1, compiled=c) for c in (True, False)]
    page = 1 << 10  # keys a page apart: each maps a row of its own
    for pool in pools:
        a = Request(0, 0.0, 15, 1, block_hashes=np.arange(14, dtype=np.int64) * page)
        pool.allocate(a, 15)  # its 14 keys take the 14 spare rows
        a.emitted = 1
        pool.free(a)
        b = Request(1, 0.0, 15, 1)  # evicts a's last block (keyed DEAD: it is done), then
        # those of pages 13 .. 5: their rows are empty
        assert pool.can_allocate(b, 15)
        pool.allocate(b, 15)
        assert pool._map.spare_n == 0 and pool.evictions == 10
        c = Request(2, 0.0, 3, 1, block_hashes=np.array([13 * page + 5, 20 * page]))
        c.computed = pool.hit(c)
        assert c.computed == 0 and pool.can_allocate(c, 3)
        pool.allocate(c, 3)  # its blocks evict those of pages 4 .. 2; then the empty rows
        # come back, but page 13's, and one goes to page 20
        assert pool._map.spare_n == 10 and pool.key_of(pool.blocks_of(c)[0]) == 13 * page + 5
    assert state(pools[0]) == state(pools[1])


@pytest.mark.parametrize("bad", [-1, 8, 1 << 40])
def test_the_compiled_steps_refuse_a_block_out_of_range_changing_nothing(bad):
    pool = CachingBlockPool(8, 1, compiled=True)
    pool._identify()
    before = (pool._records.copy(), pool._lru.copy(), pool._ids.copy(), pool._map.table.copy())
    blocks = np.array([0, 1, bad, 2], np.int64)  # the bad one neither first nor last
    with pytest.raises(IndexError, match=f"block {bad} out of range"):
        pool._c.release(blocks, 4, 2, pool._lru_tail)
    with pytest.raises(IndexError, match=f"block {bad} out of range"):
        pool._c.touch(blocks, 4, pool._lru_head)
    with pytest.raises(IndexError, match=f"block {bad} out of range"):
        pool._c.idle(blocks, 4)
    keys = np.arange(4, dtype=np.int64)  # named blocks: NumPy's to refuse (-1)
    assert pool._c.insert(keys, blocks, 0, 4, pool._map.spare_n, -1) == -1
    for was, now in zip(before, (pool._records, pool._lru, pool._ids, pool._map.table),
                        strict=True):
        np.testing.assert_array_equal(was, now)


def test_touch_refuses_a_corrupt_pool_before_it_changes_a_block():
    """A free block whose queue entry number lies outside the queue: `touch` says so and
    leaves every block as it was, the ones before it in the hits included."""
    pool = CachingBlockPool(8, 4, compiled=True)
    req = Request(0, 0.0, 13, 1, block_hashes=np.arange(3, dtype=np.int64))
    pool.allocate(req, 13)
    req.emitted = 1
    pool.free(req)  # done: its 3 keyed blocks idle in the queue
    hits = np.array(pool._live()[::-1])  # key order
    pool._seq[hits[1]] = pool._lru_tail + 100  # the second one's entry: past the queue
    before = (pool._records.copy(), pool._lru.copy())
    with pytest.raises(RuntimeError, match="touch: a free block is not in the queue"):
        pool._c.touch(hits, 3, pool._lru_head)
    for was, now in zip(before, (pool._records, pool._lru), strict=True):
        np.testing.assert_array_equal(was, now)


def test_arrays_not_read_directly_are_exported_or_refused():
    """The steps read a NumPy array's data directly only where exporting it would give the
    same integers: any other argument goes through the buffer protocol, which takes it
    (a memoryview) or refuses it (byte-swapped, unsigned, strided, 2-D, float, or an
    answer array that is read-only)."""
    pool = CachingBlockPool(8, 4, compiled=True)
    keys = np.arange(3, dtype=np.int64)
    req = Request(0, 0.0, 13, 2, block_hashes=keys)
    pool.allocate(req, 13)  # its 3 full blocks are cached under keys 0, 1, 2
    out = pool._out
    assert pool._c.run(keys, 3, out) == pool._c.run(memoryview(keys), 3, out) == 3
    odd = [keys.astype(">i8"), keys.astype(np.uint64), np.arange(6, dtype=np.int64)[::2],
           keys.reshape(1, 3), keys.astype(np.float64)]
    for array in odd:
        with pytest.raises((TypeError, ValueError, BufferError)):
            pool._c.run(array, 3, out)
    frozen = out.copy()
    frozen.flags.writeable = False
    with pytest.raises((TypeError, ValueError, BufferError)):
        pool._c.run(keys, 3, frozen)


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(0, 3), min_size=64, max_size=64),
       keys=st.lists(st.integers(-(1 << 40), 1 << 40), max_size=20), data=st.data())
def test_the_compiled_watch_counts_are_numpys(counts, keys, data):
    """watch_add adds once to each distinct slot of a range of keys, as NumPy's fancy add
    does where slots repeat; watch_above tests the same slots."""
    from llmsim.engine._pool import watch_above, watch_add

    keys = np.array(keys, np.int64)
    start = data.draw(st.integers(0, len(keys)))
    stop = data.draw(st.integers(start, len(keys)))
    slots = keys[start:stop] & 63
    for level in (0, 1, 2):
        want = bool((np.array(counts, np.int32)[slots] > level).any())
        assert watch_above(np.array(counts, np.int32), keys, start, stop, level) == want
    delta = data.draw(st.sampled_from([1, 2, -1]))
    watch, numpy = np.array(counts, np.int32), np.array(counts, np.int64)
    numpy[slots] += delta
    if (numpy < 0).any():  # refused, nothing changed
        with pytest.raises(ValueError, match="would leave"):
            watch_add(watch, keys, start, stop, delta)
        assert watch.tolist() == counts
    else:
        watch_add(watch, keys, start, stop, delta)
        assert watch.tolist() == numpy.tolist()
