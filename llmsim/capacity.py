"""How many requests per second a deployment sustains on a workload's request mix.

Load is given as a fraction of this number. It is measured on the simulator itself:
`sample` requests drawn at random from the workload's (a fixed seed: the same workload
always gets the same answer) are all queued at time 0 under FCFS, and the capacity is the
completion rate between the 30th and 70th percentile completions.

Why so many requests and the middle of the run: a saturated run finishes its short
requests early and leaves its long ones for the end, while the seats fill up with long
requests only gradually. A short probe, or one that counts from the 10th to the 90th
percentile, therefore overstates capacity when lengths are heavy-tailed: on CASTILLO's
Llama-3.1-8B lengths, 2,000 requests and 10-90% said 30.7 req/s where a long Poisson run
saturates at about 15.5 (on the Azure conversation mix the two agreed within 5%). Drawn
at random, not in trace order: a trace's lengths drift over its hour, and the middle of a
probe taken in order measured the middle of the trace (Azure conv: 22.0 req/s in order,
20.6 drawn at random, 20.7 sustained by a 100k-request saturated run).
"""

from __future__ import annotations

import numpy as np

from .engine.cost import CostModel
from .policies import FCFS
from .simulate import Deployment, simulate
from .traces.workload import Workload

WINDOW = (0.3, 0.7)  # completion percentiles whose rate is the capacity


def capacity_rps(workload: Workload, deployment: Deployment, cost: CostModel | None = None,
                 sample: int = 20000) -> float:
    """Saturated completion rate (requests/s) of `deployment` on `workload`'s lengths."""
    n = len(workload)
    if not n:
        raise ValueError("cannot measure capacity on an empty workload")
    rows = np.random.default_rng(0).integers(0, n, sample)
    saturated = Workload(np.zeros(sample), workload.prompt_tokens[rows],
                         workload.output_tokens[rows],
                         source="all queued at t=0 (capacity probe)")
    finish = simulate(saturated, FCFS, deployment, cost=cost).records.finish
    finish = np.sort(finish[~np.isnan(finish)])
    if len(finish) < 10:
        raise ValueError(f"measuring capacity needs at least 10 requests that fit the KV pool; "
                         f"this workload has {len(finish)}: give --rate instead of --load")
    lo, hi = int(WINDOW[0] * len(finish)), int(WINDOW[1] * len(finish)) - 1
    if finish[hi] > finish[lo]:
        return (hi - lo) / (finish[hi] - finish[lo])
    return len(finish) / finish[-1]  # everything finished in a few iterations
