"""How many requests per second a deployment sustains on a workload's request mix.

Load is given as a fraction of this number. It is measured on the simulator itself: every
request of (a sample of) the workload is queued at time 0 under FCFS, and the capacity is
the completion rate between the 10th and 90th percentile completions, which leaves out
the ramp-up and the drain at the ends of a saturated run.
"""

from __future__ import annotations

import numpy as np

from .engine.cost import CostModel
from .policies import FCFS
from .simulate import Deployment, simulate
from .traces.workload import Workload


def capacity_rps(workload: Workload, deployment: Deployment, cost: CostModel | None = None,
                 sample: int = 2000) -> float:
    """Saturated completion rate (requests/s) of `deployment` on `workload`'s lengths."""
    if not len(workload):
        raise ValueError("cannot measure capacity on an empty workload")
    w = workload.head(min(sample, len(workload)))
    saturated = w.with_arrivals(np.zeros(len(w)), "all queued at t=0 (capacity probe)")
    finish = simulate(saturated, FCFS, deployment, cost=cost).records.finish
    finish = np.sort(finish[~np.isnan(finish)])
    if len(finish) < 10:
        raise ValueError(f"measuring capacity needs at least 10 requests that fit the KV pool; "
                         f"this workload has {len(finish)}: give --rate instead of --load")
    lo, hi = int(0.1 * len(finish)), int(0.9 * len(finish)) - 1
    if finish[hi] > finish[lo]:
        return (hi - lo) / (finish[hi] - finish[lo])
    return len(finish) / finish[-1]  # everything finished in a few iterations
