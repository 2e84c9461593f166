"""How many requests per second a deployment sustains on a workload's request mix.

Load is given as a fraction of this number. It is the steady-state completion rate of a
saturated engine fed the workload's mix, measured on the simulator:

- **Saturated**: `n` requests queued at time 0 under FCFS, so that the engine always has
  work waiting.
- **The workload's mix, steadily**: the `n` requests are a quantile sample of the
  workload's (sorted by output, then prompt length; every (i + 1/2) / n-th), admitted in
  a low-discrepancy order (golden-ratio steps through the quantiles), so that every stretch
  of the queue holds the same mix. Drawn at random instead, the few very long requests
  of a heavy-tailed workload (CASTILLO's 15,001-token runaway generations) come in clumps
  that fill the KV pool and make the engine thrash with recompute preemptions, and the
  figure became a lottery on the clumps: on CASTILLO's Llama-3.1-8B lengths, windows of
  one random 60,000-request run gave 14.5 to 19.8 req/s; in this order they agree within
  3%. No random draw is made, so the same workload always gets the same answer.
- **Steady state**: completions are counted from the moment the running set has turned
  over (the longest residence, first scheduled to finish, of any request in the run)
  until the last request is admitted (after that the queue is empty and the engine
  drains). A heavy tail needs a long warm-up: `n` starts at `START` and grows, up to
  `MOST`, until that window holds at least half the requests' completions (to what the
  last probe's rate and warm-up say is enough, at least doubling).

`benchmarks/capacity_check.py` shows, on Azure conversation and code, CASTILLO (Llama and
Qwen lengths), arXiv summarization and Mooncake conversation lengths, that queues stay
bounded at 0.9x this capacity and grow at 1.1x.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .engine.cost import CostModel
from .policies import FCFS
from .simulate import Deployment, simulate
from .traces.workload import Workload

START = 5_000  # requests in the first probe
MOST = 160_000  # requests in the largest probe
STEADY_SHARE = 0.5  # completions the steady window must hold, as a share of the requests
GOLDEN = (5 ** 0.5 - 1) / 2


class Probe(NamedTuple):
    """One saturated run's measurement."""

    rate_rps: float  # completions per second in the steady window
    requests: int  # in the probe
    window_s: tuple[float, float]  # the steady window, seconds from the start
    in_window: int  # completions in it
    preemptions: int


def capacity_rps(workload: Workload, deployment: Deployment, cost: CostModel | None = None,
                 progress: Callable[[int, int], None] | None = None) -> float:
    """Saturated steady-state completion rate (requests/s) of `deployment` on `workload`'s
    request mix. `progress(done, total)` is called as the probe's requests finish."""
    return measure(workload, deployment, cost, progress).rate_rps


def measure(workload: Workload, deployment: Deployment, cost: CostModel | None = None,
            progress: Callable[[int, int], None] | None = None) -> Probe:
    """The probe behind `capacity_rps`, with what it saw."""
    if not len(workload):
        raise ValueError("cannot measure capacity on an empty workload")
    n = START
    while True:
        probe = _probe(workload, deployment, cost, n, progress)
        if probe.in_window >= STEADY_SHARE * n or n >= MOST:
            return probe
        # The window holds about rate x (n / rate - warm-up) completions: enough for the
        # share when n >= rate x warm-up / (1 - share); a margin for the estimate's error.
        warmup = probe.window_s[0]
        n = min(MOST, max(2 * n, int(1.25 * probe.rate_rps * warmup / (1 - STEADY_SHARE))))


def saturated_mix(workload: Workload, n: int) -> Workload:
    """`n` requests with the workload's length mix, in an order that spreads every part of
    the mix evenly, all queued at time 0."""
    by_length = np.lexsort((workload.prompt_tokens, workload.output_tokens))
    rows = by_length[((np.arange(n) + 0.5) * len(workload) / n).astype(np.int64)]
    rows = rows[np.argsort((np.arange(n) * GOLDEN) % 1.0, kind="stable")]
    return Workload(np.zeros(n), workload.prompt_tokens[rows], workload.output_tokens[rows],
                    source=f"{n} requests of the workload's mix, all queued at t=0 "
                           "(capacity probe)")


def _probe(workload: Workload, deployment: Deployment, cost: CostModel | None, n: int,
           progress: Callable[[int, int], None] | None) -> Probe:
    report = None if progress is None else (lambda done: progress(done, n))
    result = simulate(saturated_mix(workload, n), FCFS, deployment, cost=cost,
                      progress=report)
    r = result.records
    done = r.completed
    if done.sum() < 10:
        raise ValueError(f"measuring capacity needs at least 10 requests that fit the KV pool; "
                         f"this workload has {int(done.sum())}: give --rate instead of --load")
    finish = r.finish[done]
    start = float(np.max(finish - r.first_scheduled[done]))  # the running set has turned over
    end = float(np.nanmax(r.first_scheduled))  # the last admission: the queue is empty after
    in_window = int(np.count_nonzero((finish > start) & (finish <= end)))
    if end > start and in_window >= 2:
        rate = in_window / (end - start)
    else:  # everything fits at once (a small or short workload): never saturated
        rate = len(finish) / float(finish.max())
    return Probe(rate, n, (start, end), in_window, result.summary["preemptions"])
