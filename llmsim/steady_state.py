"""Steady-state output throughput, as the ML.ENERGY benchmark defines it.

With B seats (max_num_seqs, times replicas) and N requests, the steady state runs from the
moment the B-th request receives its first token to the moment N - B - 1 requests have
finished: ramp-up and the draining tail are left out. Its throughput is the output tokens
emitted inside that window over its length. Records keep each request's first-token and
finish times, not every token's: a request's tokens are taken as evenly spread between
the two (exact for a steady batch; `calibration/measured.py` counts per iteration).
"""

from __future__ import annotations

import math

import numpy as np

from .engine.records import Records


def steady_window(records: Records, seats: int) -> tuple[float, float] | None:
    """(start, end) of the steady state, or None if the run has none (N <= seats + 1, or the
    (N - B - 1)-th finish comes before the B-th first token)."""
    done = records.completed
    n = int(done.sum())
    b = min(seats, n)
    if b < 1 or n - b - 1 < 1:
        return None
    start = float(np.sort(records.first_token[done])[b - 1])
    end = float(np.sort(records.finish[done])[n - b - 2])
    return (start, end) if end > start else None


def steady_output_tps(records: Records, seats: int) -> float:
    """Output tokens per second inside the steady window; NaN if there is none."""
    window = steady_window(records, seats)
    if window is None:
        return math.nan
    t0, t1 = window
    done = records.completed
    first, finish = records.first_token[done], records.finish[done]
    out = records.output_tokens[done].astype(np.float64)
    gap = np.where(out > 1, (finish - first) / np.maximum(out - 1, 1), 0.0)
    # Token k (0-based) at first + k * gap; count k in [0, out) with t0 < time <= t1.
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(gap > 0, np.floor((t0 - first) / gap) + 1, np.where(first > t0, 0, out))
        hi = np.where(gap > 0, np.floor((t1 - first) / gap), np.where(first <= t1, 0, -1))
    lo = np.clip(lo, 0, out)
    hi = np.clip(hi, -1, out - 1)
    tokens = np.maximum(hi - lo + 1, 0).sum()
    return float(tokens / (t1 - t0))
