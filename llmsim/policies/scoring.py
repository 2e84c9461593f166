"""A ranker is not free: when requests reach the engine after being scored.

One scorer in front of the router takes every request that has arrived when it becomes
free as one batch, scores it in `delay` seconds, and releases the batch to the router at
once. Latencies still count from each request's arrival, so the delay is on its path.
"""

from __future__ import annotations

import numpy as np


def release_times(arrival: np.ndarray, delay: float) -> np.ndarray:
    """When each request, arrivals sorted, leaves a batching scorer of fixed `delay`."""
    if delay < 0:
        raise ValueError(f"delay must be >= 0, got {delay}")
    arrival = np.asarray(arrival, dtype=np.float64)
    release = np.empty_like(arrival)
    if delay == 0:
        release[:] = arrival
        return release
    i, free_at, n = 0, -np.inf, len(arrival)
    while i < n:
        start = max(arrival[i], free_at)
        j = int(np.searchsorted(arrival, start, side="right"))  # all arrived by `start`
        free_at = start + delay
        release[i:j] = free_at
        i = j
    return release
