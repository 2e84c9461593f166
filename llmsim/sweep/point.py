"""One point of a sweep: draw its arrivals, simulate, flatten the summary into a table row.

This is the function the backends run, on this machine or on a Ray worker; it depends only
on its arguments, so the same point gives the same row wherever it runs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..policies import get_policy
from ..simulate import simulate
from ..traces.workload import Workload
from .grid import Grid, Point

# The latency distributions kept per point, for CDFs: percentiles 0..99, 99.5, 99.9, 100
# of the completed requests' E2E and TTFT. Per-request records would be 3,000+ rows per
# point; 103 quantiles draw the same curve at a fraction of the size.
QUANTILE_LEVELS = tuple([i / 100 for i in range(100)] + [0.995, 0.999, 1.0])
DISTRIBUTIONS = ("e2e", "ttft")


class Shared(NamedTuple):
    """What every point needs and no point changes: shipped once per worker (or node)."""

    grid: Grid
    workload: Workload


class PointTask(NamedTuple):
    point: Point
    rate: float  # req/s: the point's rate, or its load x the capacity below
    capacity: float | None  # req/s of the point's engine variant, measured when loads are used


def run_point(shared: Shared, task: PointTask) -> dict:
    """The point's row: config columns, then every summary figure, then the quantiles."""
    grid, point = shared.grid, task.point
    # One generator per seed, whatever the policy or rate: the policies of one seed see the
    # same arrivals, and other rates the same gaps rescaled (common random numbers).
    w, _ = grid.arrivals(task.rate, point.seed).place(shared.workload)
    deployment = grid.deployment_for(point.engine)
    result = simulate(w, get_policy(point.policy), deployment, grid.slo,
                      simulator=grid.simulator)
    row = {"point_id": point.id, "policy": point.policy, "engine": point.engine,
           "load": point.load if point.load is not None else
           (task.rate / task.capacity if task.capacity else None),
           "rate_rps": task.rate, "seed": point.seed, "capacity_rps": task.capacity}
    row.update({f"engine_{k}": v for k, v in deployment.engine.to_dict().items()})
    row.update(flatten(result.summary))
    cols = result.records.columns()
    done = result.records.completed
    for name in DISTRIBUTIONS:
        values = cols[name][done]
        values = values[~np.isnan(values)]
        row[f"{name}_quantiles"] = (np.quantile(values, QUANTILE_LEVELS).tolist() if len(values)
                                    else [math.nan] * len(QUANTILE_LEVELS))
    return row


def flatten(summary: dict, prefix: str = "") -> dict:
    """{"e2e": {"p90": x}} -> {"e2e_p90": x}; lists (per-replica stats) and the SLO (it is in
    the grid) are left out."""
    out = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if key == "slo" and not prefix or isinstance(value, list | tuple):
            continue
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}_"))
        elif isinstance(value, bool | int | float | np.integer | np.floating) or value is None:
            out[name] = value.item() if isinstance(value, np.generic) else value
    return out
