"""Arrival processes: when requests arrive. Every draw takes an explicit numpy Generator."""

from __future__ import annotations

import numpy as np


def poisson(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """n arrival times (s) of a Poisson process at `rate` req/s, the first at its first gap."""
    return gamma(n, rate, 1.0, rng)


def gamma(n: int, rate: float, burstiness: float, rng: np.random.Generator) -> np.ndarray:
    """Gamma-distributed gaps with mean 1/rate, as vLLM's benchmark `--burstiness`: shape =
    burstiness (1 is Poisson; below 1 burstier, above 1 more regular)."""
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if not burstiness > 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n)
    return np.cumsum(gaps)


def scale_to_rate(arrival: np.ndarray, rate: float) -> np.ndarray:
    """Stretch or squeeze arrival times (from the first) so the mean rate is `rate` req/s,
    keeping the trace's shape: its bursts and lulls scale with it."""
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    arrival = np.asarray(arrival, dtype=np.float64)
    n = len(arrival)
    if n < 2:
        return arrival - (arrival[0] if n else 0.0)
    span = arrival[-1] - arrival[0]
    if span <= 0:
        raise ValueError("all arrivals are simultaneous: there is no rate to rescale")
    # n requests over `span` seconds is a mean rate of (n - 1) / span gaps per second
    return (arrival - arrival[0]) * ((n - 1) / span / rate)


def scale_to_load(arrival: np.ndarray, load: float, capacity_rps: float) -> np.ndarray:
    """Rescale to `load` x `capacity_rps` (see llmsim.capacity for how capacity is measured)."""
    if not load > 0:
        raise ValueError(f"load must be > 0, got {load}")
    return scale_to_rate(arrival, load * capacity_rps)
