"""Hand-computed cases that pin the engine's vLLM V1 semantics, on both simulators."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest

from llmsim import simulate
from llmsim.engine.blocks import BlockPool
from llmsim.engine.config import EngineConfig
from llmsim.engine.request import Request
from llmsim.engine.scheduler import Scheduler
from llmsim.policies import FCFS, SJF
from tests.helpers import LinearCost, deployment, workload


@pytest.fixture
def sim(simulator):
    """`simulate` on one simulator; each test runs on both (conftest.py)."""
    return partial(simulate, simulator=simulator)

def test_single_request_ttft_and_e2e_are_sums_of_iteration_costs(sim):
    cost = LinearCost(base=0.5, per_token=0.01, per_context=0.001)
    res = sim(workload([(2.0, 100, 4)]), FCFS, deployment(), cost=cost)
    # iteration 1: prefill of 100 tokens; then 3 decodes with contexts 101, 102, 103
    prefill = 0.5 + 0.01 * 100
    decodes = [0.5 + 0.01 + 0.001 * c for c in (101, 102, 103)]
    r = res.records
    assert r.first_token[0] == pytest.approx(2.0 + prefill, rel=1e-12)
    assert r.finish[0] == pytest.approx(2.0 + prefill + sum(decodes), rel=1e-12)
    assert r.first_scheduled[0] == 2.0
    assert [s.num_tokens for s in cost.shapes] == [100, 1, 1, 1]
    assert [s.decode_context for s in cost.shapes] == [0, 101, 102, 103]
    assert cost.shapes[0].prefill_chunks == ((100, 0),)
    cols = r.columns()
    assert cols["tpot"][0] == pytest.approx(sum(decodes) / 3, rel=1e-12)
    assert cols["normalized_latency"][0] == pytest.approx((prefill + sum(decodes)) / 4)
    assert res.summary["itl"]["mean"] == pytest.approx(sum(decodes) / 3)


def test_one_token_request_finishes_with_its_prefill(sim):
    cost = LinearCost(base=1.0)
    res = sim(workload([(0.0, 10, 1)]), FCFS, deployment(), cost=cost)
    assert res.records.first_token[0] == res.records.finish[0] == 1.0
    assert math.isnan(res.records.columns()["tpot"][0])


def test_chunked_prefill_splits_as_the_budget_says(sim):
    cost = LinearCost(base=1.0)
    res = sim(workload([(0.0, 300, 2)]), FCFS, deployment(max_num_batched_tokens=128),
                   cost=cost)
    assert [s.prefill_chunks for s in cost.shapes[:3]] == [((128, 0),), ((128, 128),), ((44, 256),)]
    assert [s.num_sampled for s in cost.shapes] == [0, 0, 1, 1]
    assert res.records.first_token[0] == 3.0  # first token after the last chunk
    assert res.records.finish[0] == 4.0


def test_budget_is_shared_running_first_then_waiting(sim):
    # A decodes while B's prompt is chunked into what budget remains.
    cost = LinearCost(base=1.0)
    sim(workload([(0.0, 10, 5), (0.5, 100, 1)]), FCFS,
             deployment(max_num_batched_tokens=40), cost=cost)
    # it1: A prefill 10. it2 (t=1): A decode 1 + B chunk 39. it3: A 1 + B 39.
    # it4: A 1 + B's last 22 (100 - 78). it5: A's last decode.
    assert [s.num_tokens for s in cost.shapes] == [10, 40, 40, 23, 1]
    assert cost.shapes[3].prefill_chunks == ((22, 78),)
    assert cost.shapes[3].num_decodes == 1


def test_admission_needs_room_for_the_whole_prompt_though_it_takes_only_a_chunk():
    # vLLM V1 (scheduler_reserve_full_isl, on by default) admits a waiting request only if
    # the free pool holds every token it has (prompt, plus any emitted before a preemption),
    # though it allocates only the first chunk's blocks. Found by tests/vllm_diff.py.
    pool = BlockPool(num_blocks=10, block_size=4)
    sched = Scheduler(EngineConfig(max_num_seqs=4, max_num_batched_tokens=16, block_size=4),
                      pool, FCFS)
    a, b = Request(0, 0.0, 12, 2), Request(1, 0.0, 32, 1)  # b's prompt: 8 blocks
    sched.add(a, 0.0)
    sched.add(b, 0.0)
    batch = sched.schedule(0.0)  # a takes 3 blocks; 7 free: room for b's first 4 tokens,
    assert [(r.id, n) for r, n in batch.items] == [(0, 12)]  # not for its prompt
    assert pool.free_blocks == 7
    sched.complete(batch, 1.0)
    batch = sched.schedule(1.0)  # a's last token takes a 4th block: 6 free, b still waits
    assert [(r.id, n) for r, n in batch.items] == [(0, 1)]
    sched.complete(batch, 2.0)  # a finishes: 10 free
    batch = sched.schedule(2.0)  # b is admitted with a 16-token chunk: 4 blocks
    assert [(r.id, n) for r, n in batch.items] == [(1, 16)] and pool.free_blocks == 6


def test_max_num_seqs_limits_the_running_set(sim):
    cost = LinearCost(base=1.0)
    res = sim(workload([(0.0, 5, 3)] * 3), FCFS, deployment(max_num_seqs=2), cost=cost)
    assert [s.num_seqs for s in cost.shapes] == [2, 2, 2, 1, 1, 1]
    assert list(res.records.first_scheduled) == [0.0, 0.0, 3.0]


def test_fcfs_preempts_the_last_admitted_which_recomputes_and_finishes_later(sim):
    # block_size 4, 6 blocks = 24 KV slots. A and B each prompt 8 (2 blocks) and 9 outputs.
    # Each grows one slot per decode; when the pool is dry, FCFS evicts B (admitted last).
    cost = LinearCost(base=1.0)
    res = sim(workload([(0.0, 8, 9), (0.0, 8, 9)]), FCFS,
              deployment(block_size=4, num_gpu_blocks=6, enable_prefix_caching=False), cost=cost)
    r = res.records
    assert list(r.preemptions) == [0, 1]
    assert list(r.emitted_tokens) == [9, 9]
    assert r.finish[1] > r.finish[0]
    assert r.recomputed_tokens[1] > 0
    total_fed = sum(s.num_tokens for s in cost.shapes)
    assert total_fed == sum(8 + 9 - 1 for _ in range(2)) + int(r.recomputed_tokens.sum())


@pytest.mark.parametrize("caching", [False, True], ids=["recompute", "cached"])
def test_fcfs_preemption_timeline_by_hand(sim, caching):
    # block_size 2, 5 blocks (10 slots). A: prompt 4, out 4 -> needs up to 7 slots.
    # B: prompt 2, out 4 -> up to 5 slots. Both arrive at 0, A first.
    cost = LinearCost(base=1.0)
    res = sim(workload([(0.0, 4, 4), (0.0, 2, 4)]), FCFS,
              deployment(block_size=2, num_gpu_blocks=5, enable_prefix_caching=caching),
              cost=cost)
    # t0: A prefill 4 (2 blocks), B prefill 2 (1 block); free 2. tokens out at t=1: A1, B1.
    # t1: A feeds 1 (slot 5 -> 3 blocks), B feeds 1 (slot 3 -> 2 blocks); free 0. out t=2.
    # t2: A feeds 1 (slot 6 fits in 3 blocks); B (slot 4 fits in 2 blocks). out t=3: A3, B3.
    # t3: A needs slot 7 -> 4th block; none free -> preempt B (last admitted, 2 blocks freed,
    #     its 4 computed tokens discarded). A feeds 1; no waiting admission after a preemption.
    #     At t=4 A emits its 4th token and finishes (4 blocks freed).
    # t4: B recomputes prompt 2 + 3 emitted = 5 tokens, emits its 4th at t=5, finishes.
    #     With caching, B's two full blocks were freed tail first, so A's 4th block evicted
    #     B's second and B finds its first again: it computes 3 tokens after 2 cached.
    r = res.records
    assert list(r.finish) == [4.0, 5.0]
    assert list(r.first_token) == [1.0, 1.0]
    assert list(r.preemptions) == [0, 1]
    assert list(r.recomputed_tokens) == [0, 4]  # thrown away, whether found again or not
    assert list(r.cached_tokens) == [0, 0]  # the first admission's hits only, as vLLM counts
    fed_again = 3 if caching else 5
    # tokens conserved: each request's prompt + output - 1, plus what was computed again
    assert sum(s.num_tokens for s in cost.shapes) == (4 + 4 - 1) + (2 + 4 - 1) + fed_again - 1
    assert [s.num_tokens for s in cost.shapes] == [6, 2, 2, 1, fed_again]
    assert cost.shapes[4].prefill_chunks == ((fed_again, 5 - fed_again),)


def test_priority_victim_already_in_batch_returns_its_budget():
    # vLLM's priority rule evicts the running request with the largest (rank, arrival), even
    # one already placed in this iteration's batch: its tokens go back to the budget.
    pool = BlockPool(num_blocks=3, block_size=2)
    sched = Scheduler(EngineConfig(block_size=2), pool, SJF)
    long, short = Request(0, 0.0, 2, 4), Request(1, 0.5, 2, 2)  # SJF ranks 4 and 2
    sched.add(long, 0.0)
    sched.complete(sched.schedule(0.0), 1.0)  # long: 2 prompt tokens, 1 block
    sched.add(short, 1.0)
    batch = sched.schedule(1.0)  # long decodes (2nd block), short prefills (3rd block)
    assert [(r.id, n) for r, n in batch.items] == [(0, 1), (1, 2)]
    sched.complete(batch, 2.0)
    # long feeds its 4th token (fits its 2 blocks); short feeds its 3rd and needs a block: the
    # pool is dry, the victim is long (rank 4), already batched, so it leaves the batch.
    batch = sched.schedule(2.0)
    assert [(r.id, n) for r, n in batch.items] == [(1, 1)]
    assert [r.id for r in batch.preempted] == [0]
    assert batch.shape.num_tokens == 1
    assert long.computed == 0 and long.discarded == 3 and sched.waiting.head() is long
    assert pool.free_blocks == 1 and pool.held(short) == 2


def test_priority_victim_can_be_the_requester_itself():
    # Under SJF a long request that needs a block while only shorter ones run evicts itself;
    # under FCFS the same situation evicts the last admitted.
    pool = BlockPool(num_blocks=3, block_size=2)
    sched = Scheduler(EngineConfig(block_size=2), pool, SJF)
    a, b = Request(0, 0.0, 2, 4), Request(1, 0.0, 2, 2)
    sched.add(a, 0.0)
    sched.add(b, 0.0)
    batch = sched.schedule(0.0)
    assert [(r.id, n) for r, n in batch.items] == [(1, 2), (0, 2)]  # SJF order: b, then a
    sched.complete(batch, 1.0)
    batch = sched.schedule(1.0)  # b takes the last block; a needs one: victim max rank = a
    assert [(r.id, n) for r, n in batch.items] == [(1, 1)]
    assert [r.id for r in batch.preempted] == [0]
    assert pool.free_blocks == 1


def test_running_requests_after_one_that_preempted_itself_still_run():
    # vLLM's priority rule: a running request that needs a block when the pool is dry and
    # ranks worst preempts itself; the running requests after it rank better and are still
    # scheduled (they may fit in what it freed). Found by tests/vllm_diff.py.
    pool = BlockPool(num_blocks=4, block_size=2)
    sched = Scheduler(EngineConfig(block_size=2), pool, SJF)
    long, short = Request(0, 0.0, 3, 5), Request(1, 1.0, 3, 3)  # SJF ranks 5 and 3
    sched.add(long, 0.0)
    sched.complete(sched.schedule(0.0), 1.0)  # long: prompt 3, 2 blocks
    sched.add(short, 1.0)
    batch = sched.schedule(1.0)  # long feeds its 4th token (2 blocks); short takes the rest
    assert [(r.id, n) for r, n in batch.items] == [(0, 1), (1, 3)] and pool.free_blocks == 0
    sched.complete(batch, 2.0)
    batch = sched.schedule(2.0)  # long's 5th token needs a 3rd block: it is the victim
    assert [r.id for r in batch.preempted] == [0]
    assert [(r.id, n) for r, n in batch.items] == [(1, 1)] and pool.free_blocks == 2


def test_priority_victim_among_ties_is_the_first_in_running_order():
    # vLLM's priority rule is max(running, key=(priority, arrival)): among running requests
    # tied on both, the first in running order (admitted earliest), not the last id.
    # Found by tests/vllm_diff.py.
    pool = BlockPool(num_blocks=3, block_size=2)
    sched = Scheduler(EngineConfig(block_size=2), pool, SJF)
    a, b = Request(0, 0.0, 2, 3), Request(1, 0.0, 2, 3)  # same rank, same arrival
    sched.add(a, 0.0)
    sched.add(b, 0.0)
    sched.complete(sched.schedule(0.0), 1.0)  # one block each
    batch = sched.schedule(1.0)  # a takes the last block; b needs one: the victim is a
    assert [r.id for r in batch.preempted] == [0]
    assert [(r.id, n) for r, n in batch.items] == [(1, 1)] and pool.held(b) == 2


def test_no_admission_in_an_iteration_that_preempted():
    pool = BlockPool(num_blocks=3, block_size=2)
    sched = Scheduler(EngineConfig(block_size=2), pool, FCFS)
    a, b, c = Request(0, 0.0, 2, 4), Request(1, 0.0, 2, 2), Request(2, 0.0, 1, 1)
    for r in (a, b):
        sched.add(r, 0.0)
    sched.complete(sched.schedule(0.0), 1.0)
    sched.add(c, 1.0)
    batch = sched.schedule(1.0)  # a takes the last block; b needs one -> b (last) preempted
    assert [r.id for r in batch.preempted] == [1]
    assert [(r.id, n) for r, n in batch.items] == [(0, 1)]  # c waits although a block is free
    assert pool.free_blocks == 1


def test_request_that_can_never_fit_is_rejected_and_counted(sim):
    cost = LinearCost(base=1.0)
    res = sim(workload([(0.0, 100, 10), (1.0, 4, 2)]), FCFS,
                   deployment(block_size=4, num_gpu_blocks=10), cost=cost)
    r = res.records
    assert list(r.rejected) == [True, False]
    assert np.isnan(r.finish[0]) and r.finish[1] == 3.0
    assert res.summary["rejected"] == 1 and res.summary["completed"] == 1


def test_arrival_at_an_iteration_end_joins_the_next_iteration(sim):
    cost = LinearCost(base=1.0)
    sim(workload([(0.0, 4, 3), (1.0, 6, 1)]), FCFS, deployment(), cost=cost)
    assert [s.num_tokens for s in cost.shapes] == [4, 7, 1]


def test_round_robin_and_least_tokens_routing(sim):
    rows = [(0.0, 100, 50), (0.1, 10, 2), (0.2, 10, 2), (0.3, 10, 2)]
    rr = sim(workload(rows), FCFS, deployment(num_replicas=2), cost=LinearCost())
    assert list(rr.records.replica) == [0, 1, 0, 1]
    lt = sim(workload(rows), FCFS, deployment(num_replicas=2, router="least-tokens"),
                  cost=LinearCost())
    # replica 0 holds the 100-token request; the short ones go to replica 1
    assert list(lt.records.replica) == [0, 1, 1, 1]


def test_unknown_router_is_a_clear_error(sim):
    with pytest.raises(ValueError, match="unknown router 'nearest'.*round-robin"):
        sim(workload([(0.0, 1, 1)]), FCFS, deployment(router="nearest"), cost=LinearCost())


def test_sjf_serves_short_jobs_first_under_a_queue(sim):
    rows = [(0.0, 10, 50)] + [(0.01, 10, n) for n in (40, 5, 20)]
    res = sim(workload(rows), SJF, deployment(max_num_seqs=1), cost=LinearCost())
    order = np.argsort(res.records.first_scheduled)
    assert list(order) == [0, 2, 3, 1]


def test_srpt_evicts_a_longer_running_request_for_a_shorter_waiting_one(sim):
    from llmsim.policies import SRPT

    # One seat. A (prompt 4, 10 tokens) runs; B (prompt 2, 2 tokens) arrives at 2.5.
    rows = [(0.0, 4, 10), (2.5, 2, 2)]
    cost = LinearCost(base=1.0)
    srpt = sim(workload(rows), SRPT, deployment(max_num_seqs=1), cost=cost).records
    # t3: A (7 tokens left) ranks worse than B (2): A leaves the batch, B prefills; B emits
    # at 4 and 5. A recomputes its prompt + 3 tokens (7) at t5, emits its 4th at 6 and the
    # rest one per iteration: finishes at 12. It had computed 6 tokens when evicted.
    assert list(srpt.finish) == [12.0, 5.0]
    assert list(srpt.preemptions) == [1, 0]
    assert list(srpt.recomputed_tokens) == [6, 0]
    assert cost.shapes[3].num_tokens == 2 and cost.shapes[5].prefill_chunks == ((7, 0),)
    fcfs = sim(workload(rows), FCFS, deployment(max_num_seqs=1), cost=LinearCost()).records
    assert list(fcfs.finish) == [10.0, 12.0]


def test_srpt_does_not_evict_for_an_equal_or_worse_rank(sim):
    from llmsim.policies import SRPT

    rows = [(0.0, 4, 3), (0.5, 2, 9)]
    srpt = sim(workload(rows), SRPT, deployment(max_num_seqs=1), cost=LinearCost()).records
    assert list(srpt.preemptions) == [0, 0]
    assert list(srpt.finish) == [3.0, 12.0]  # B: prefill at 3, 9 tokens at 4..12


def test_starvation_prevention_promotes_a_request_left_waiting(sim):
    from llmsim.policies import get_policy, with_starvation_prevention

    # One seat; a long job arrives first behind a short one, then short jobs keep arriving.
    # SJF serves every short job first; with starvation prevention (after 3 iterations
    # waiting) the long one is promoted, and promoted requests go ahead of the others.
    rows = [(0.0, 1, 2), (0.1, 1, 8)] + [(1.2 + i, 1, 2) for i in range(8)]
    dep = deployment(max_num_seqs=1)
    sjf = sim(workload(rows), SJF, dep, cost=LinearCost()).records
    sp = sim(workload(rows), with_starvation_prevention(SJF, 3, 5), dep,
                  cost=LinearCost()).records
    assert sjf.first_scheduled[1] == max(sjf.first_scheduled)  # served last
    # L entered the queue during iteration 1; promoted at the start of iteration 4 (t=3)
    # while the first short job holds the seat until t=4; then L runs ahead of the short
    # jobs waiting, none of them promoted yet.
    assert sp.first_scheduled[1] == 4.0
    assert get_policy("sjf+sp").starvation == (100, 20)
    assert get_policy("SJF+sp").name == "sjf+sp"


def test_a_promotion_lasts_while_the_request_waits_and_promoted_go_by_rank(sim):
    from llmsim.policies import with_starvation_prevention

    # One seat, held by A for 20 iterations. L (8 tokens) waits from t=0.1 and is promoted
    # at iteration 4; its promotion outlasts the quantum of 2 iterations, as vllm-ltr
    # counts the quantum in iterations run. S0 (2 tokens), promoted too, ranks better and
    # runs first at t=20; at t=22 L goes ahead of S1 and S2, short but not yet promoted.
    rows = [(0.0, 1, 20), (0.1, 1, 8), (0.2, 1, 2), (20.5, 1, 2), (21.5, 1, 2)]
    sp = sim(workload(rows), with_starvation_prevention(SJF, 3, 2),
                  deployment(max_num_seqs=1), cost=LinearCost()).records
    assert list(sp.first_scheduled) == [0.0, 22.0, 20.0, 30.0, 32.0]
