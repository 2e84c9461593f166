"""Confidence intervals from seeds: each seed is one independent replication of a point."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class Interval(NamedTuple):
    mean: float
    low: float  # mean -/+ the half-width; equal to the mean when there is one seed
    high: float
    n: int


def t_interval(values, level: float = 0.95) -> Interval:
    """Student-t interval for the mean of `values` (NaNs dropped): mean +- t * s / sqrt(n)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if n == 1:
        return Interval(mean, mean, mean, 1)
    from scipy import stats  # here, not at import: every `llmsim` command imports this module

    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)
