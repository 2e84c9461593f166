"""A streaming histogram on log-spaced bins, for percentiles of values too many to keep.

Inter-token latencies number one per generated token; a run of a million requests emits
hundreds of millions. Bins are 1% wide (relative), so a percentile read from them is within
about 0.6% of the exact one; the exact mean is kept alongside.
"""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np


class LogHistogram:
    def __init__(self, low: float = 1e-6, high: float = 1e4, per_decade: int = 230) -> None:
        self.low = low
        self.per_decade = per_decade
        self._log_low = math.log10(low)
        self.num_bins = int(math.ceil((math.log10(high) - self._log_low) * per_decade)) + 2
        # [0]: below low, [-1]: above high. A list: one value added is one list item
        # incremented, several times cheaper than a NumPy scalar update.
        self.bins = [0] * self.num_bins
        self.total = 0
        self.sum = 0.0
        # Bin i >= 1 holds [edges[i-1], edges[i]): plain comparisons, which a caller adding
        # many values itself (the fast simulator's decode runs) makes the same way.
        self.edges = (10.0 ** (self._log_low + np.arange(self.num_bins - 1) / per_decade)).tolist()

    def bin(self, value: float) -> int:
        return bisect_right(self.edges, value)

    @property
    def counts(self) -> np.ndarray:
        return np.array(self.bins, dtype=np.int64)

    def add(self, value: float, count: int = 1) -> None:
        self.bins[bisect_right(self.edges, value)] += count
        self.total += count
        self.sum += value * count

    @property
    def mean(self) -> float:
        return self.sum / self.total if self.total else math.nan

    def quantile(self, q: float) -> float:
        """The q-quantile (0..1), as the geometric centre of the bin it falls in."""
        if not self.total:
            return math.nan
        rank = q * (self.total - 1)
        i = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        if i == 0:
            return self.low
        lo = 10 ** (self._log_low + (i - 1) / self.per_decade)
        return lo * 10 ** (0.5 / self.per_decade)
