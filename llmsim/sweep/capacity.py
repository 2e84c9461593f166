"""The capacity answer: per policy, the highest request rate whose P90 TTFT and P90 TPOT meet
an SLO, found by bisection on the simulator.

A rate is judged by simulating the workload at that rate once per seed and averaging each
P90 over the seeds. The same seed draws the same gaps at every rate, rescaled (common
random numbers), so that latency grows with the rate as smoothly as the simulator allows and
bisection does not chase seed noise. The bracket [low, high] (req/s; default 0.1x and 2x the
deployment's measured saturated capacity) is widened, halving the low end or doubling the
high end up to `MAX_WIDENINGS` times, until the low end meets the SLO and the high end does
not; then it is halved until high - low <= tolerance x low. The answer is the low end: a
rate seen to meet the SLO, with the high end, a rate seen to miss it, at most
`tolerance` above it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..capacity import capacity_rps
from ..engine.summary import Slo
from ..policies import UnknownPolicyError, get_policy
from ..simulate import Deployment, simulate
from ..traces.workload import Workload
from ..workload_spec import WorkloadSpec
from .backends import run_tasks

MAX_WIDENINGS = 6


class SloTarget(NamedTuple):
    """Bounds in seconds on the P90s of a run; None: not bounded."""

    ttft_p90: float | None = None
    tpot_p90: float | None = None


class RateCheck(NamedTuple):
    rate: float
    ttft_p90: float  # seconds, mean over seeds
    tpot_p90: float
    meets: bool


class CapacityAnswer(NamedTuple):
    policy: str
    rate_rps: float  # highest rate seen to meet the SLO; 0.0 when none was found
    fails_at_rps: float  # lowest rate seen to miss it; inf when none was found
    load: float | None  # rate_rps as a fraction of the deployment's saturated capacity
    ttft_p90_s: float  # at rate_rps, mean over seeds
    tpot_p90_s: float
    evaluations: int  # rates simulated, each once per seed
    status: str  # "found", "below-bracket" (even the widened low end misses the SLO) or
    # "above-bracket" (even the widened high end meets it: the workload is too short to
    # build a queue that breaks the SLO)


class SearchSetup(NamedTuple):
    """What every policy's search shares (shipped once per worker)."""

    workload: Workload
    deployment: Deployment
    target: SloTarget
    seeds: tuple[int, ...]
    bracket: tuple[float, float]
    tolerance: float
    burstiness: float
    simulator: str
    capacity: float | None


def capacity_search(workload: Workload, policies, deployment: Deployment = Deployment(),
                    target: SloTarget = SloTarget(), seeds=(0,),
                    bracket: tuple[float, float] | None = None, tolerance: float = 0.02,
                    burstiness: float = 1.0, simulator: str = "fast", jobs: int | None = 1,
                    ray: str | None = None,
                    progress: Callable[[str, int, int], None] | None = None
                    ) -> list[CapacityAnswer]:
    """The highest rate meeting `target` for each of `policies` (names), one row each in
    the order given; policies are searched in parallel on the given backend.
    `progress(what, done, total)` follows the capacity probe ("capacity", requests) and
    the search ("policies", policies answered)."""
    if target.ttft_p90 is None and target.tpot_p90 is None:
        raise ValueError("the capacity search needs an SLO: a P90 TTFT or P90 TPOT bound")
    for bound in target:
        if bound is not None and not (bound > 0 and math.isfinite(bound)):
            raise ValueError(f"SLO bounds must be finite and > 0, got {bound}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
    if not seeds:
        raise ValueError("the capacity search needs at least one seed")
    policies = list(policies)
    for name in policies:  # unknown names fail before any simulation
        try:
            get_policy(name)
        except UnknownPolicyError as e:
            raise ValueError(str(e)) from None
    if bracket is not None:
        low, high = (float(v) for v in bracket)
        if not (0 < low < high and math.isfinite(high)):
            raise ValueError(f"the bracket must be 0 < low < high (req/s), got {bracket}")

    def probed(done: int, total: int) -> None:
        if progress is not None:
            progress("capacity", done, total)

    try:
        capacity = float(capacity_rps(workload, deployment, progress=probed))
    except ValueError:  # too few requests fit to measure
        if bracket is None:
            raise
        capacity = None  # answers in req/s only
    if bracket is None:
        bracket = (0.1 * capacity, 2.0 * capacity)
    low, high = (float(v) for v in bracket)
    setup = SearchSetup(workload, deployment, target, tuple(seeds), (low, high), tolerance,
                        burstiness, simulator, capacity)
    answers: list[CapacityAnswer | None] = [None] * len(policies)
    if progress is not None:
        progress("policies", 0, len(policies))
    for k, (i, answer) in enumerate(run_tasks(search_one, setup, policies, jobs, ray)):
        answers[i] = answer
        if progress is not None:
            progress("policies", k + 1, len(policies))
    return answers


def search_one(setup: SearchSetup, policy: str) -> CapacityAnswer:
    """Bisection for one policy (run by a backend worker)."""
    checks: list[RateCheck] = []

    def check(rate: float) -> RateCheck:
        c = check_rate(setup, policy, rate)
        checks.append(c)
        return c

    low, high = setup.bracket
    best, worst = check(low), None
    for _ in range(MAX_WIDENINGS):
        if best.meets:
            break
        worst, high, low = best, low, low / 2
        best = check(low)
    if not best.meets:
        return _answer(setup, policy, None, low, len(checks), "below-bracket")
    worst = worst or check(high)
    for _ in range(MAX_WIDENINGS):
        if not worst.meets:
            break
        best, low, high = worst, high, high * 2
        worst = check(high)
    if worst.meets:
        return _answer(setup, policy, worst, math.inf, len(checks), "above-bracket")
    while high - low > setup.tolerance * low:
        mid = check((low + high) / 2)
        if mid.meets:
            best, low = mid, mid.rate
        else:
            high = mid.rate
    return _answer(setup, policy, best, high, len(checks), "found")


def check_rate(setup: SearchSetup, policy: str, rate: float) -> RateCheck:
    """Simulate `policy` at `rate` once per seed; the P90s averaged over seeds, and whether
    they meet the target."""
    ttft, tpot = [], []
    w = setup.workload
    for seed in setup.seeds:
        spec = WorkloadSpec(arrival_process="gamma", rate=rate, burstiness=setup.burstiness,
                            seed=seed)
        summary = simulate(spec.place(w)[0], get_policy(policy), setup.deployment, Slo(),
                           simulator=setup.simulator).summary
        ttft.append(summary["ttft"]["p90"])
        tpot.append(summary["tpot"]["p90"])
    ttft_p90, tpot_p90 = float(np.mean(ttft)), float(np.mean(tpot))
    t = setup.target
    meets = ((t.ttft_p90 is None or ttft_p90 <= t.ttft_p90)  # NaN (nothing finished): misses
             # NaN TPOT (every request one token long) cannot miss a TPOT bound
             and (t.tpot_p90 is None or math.isnan(tpot_p90) or tpot_p90 <= t.tpot_p90))
    return RateCheck(rate, ttft_p90, tpot_p90, meets)


def _answer(setup: SearchSetup, policy: str, best: RateCheck | None, fails_at: float,
            evaluations: int, status: str) -> CapacityAnswer:
    rate = best.rate if best is not None else 0.0
    return CapacityAnswer(
        policy, rate, fails_at, rate / setup.capacity if setup.capacity else None,
        best.ttft_p90 if best is not None else math.nan,
        best.tpot_p90 if best is not None else math.nan, evaluations, status)
