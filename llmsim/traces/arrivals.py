"""Arrival processes: when requests arrive. Every draw takes an explicit numpy Generator.

Functions return arrival times (float64 seconds, non-decreasing, >= 0):
- `poisson(n, rate, rng)`: exponential gaps with mean 1/rate;
- `gamma(n, rate, burstiness, rng)`: gamma gaps as vLLM's `bench serve --burstiness`
  draws them: shape = burstiness, scale = 1 / (rate x burstiness), so the mean gap is
  1/rate whatever the burstiness and the gaps' coefficient of variation is
  1/sqrt(burstiness) (1 is Poisson; below 1 burstier, above 1 more regular);
- `replay(arrival, n)`: a trace's own times, tiled in time past its end (`tile`);
- `scale_to_rate`: the same shape at another mean rate.
A rate of `inf` sends every request at time 0 (vLLM's `--request-rate inf`).

The small classes `Poisson`, `Gamma` and `Replay` wrap these as values with one method,
`times(n, rng)`, so that a process can be passed around (to `synthesize`, written in a
run's config) before anything is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


def poisson(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """n arrival times (s) of a Poisson process at `rate` req/s, the first at its first gap."""
    return gamma(n, rate, 1.0, rng)


def gamma(n: int, rate: float, burstiness: float, rng: np.random.Generator) -> np.ndarray:
    """Gamma-distributed gaps with mean 1/rate, as vLLM's benchmark `--burstiness`: shape =
    burstiness (1 is Poisson; below 1 burstier, above 1 more regular)."""
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if not burstiness > 0 or not np.isfinite(burstiness):
        raise ValueError(f"burstiness must be > 0 and finite, got {burstiness}")
    if np.isinf(rate):
        return np.zeros(n)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n)
    return np.cumsum(gaps, out=gaps)


def tile(arrival: np.ndarray, n: int) -> np.ndarray:
    """n arrival times repeating a trace's gaps: the trace (from its first arrival, moved
    to 0), then again shifted by one period, and so on. The period is the trace's span
    plus its mean gap, so the seam between copies is an ordinary gap and the mean rate
    over whole copies is the trace's own, (m - 1) / span for m arrivals."""
    a = np.asarray(arrival, dtype=np.float64)
    m = len(a)
    if m == 0:
        raise ValueError("cannot tile an empty trace")
    a = a - a[0]
    if n <= m:
        return a[:n].copy()
    span = a[-1]
    if m < 2 or not span > 0:
        raise ValueError("cannot tile a trace whose arrivals are all at the same time: "
                         "it has no gaps to repeat")
    copies = -(-n // m)
    period = span * m / (m - 1)
    out = (a[None, :] + period * np.arange(copies, dtype=np.float64)[:, None]).ravel()
    return out[:n]


def replay(arrival: np.ndarray, n: int | None = None, tile_past_end: bool = True) -> np.ndarray:
    """The trace's arrival times from 0; the first n of them, tiled (see `tile`) when n
    is more than the trace has, unless `tile_past_end` is False (then that is an error)."""
    a = np.asarray(arrival, dtype=np.float64)
    n = len(a) if n is None else n
    if n > len(a) and not tile_past_end:
        raise ValueError(f"the trace has {len(a)} arrivals, {n} were asked for "
                         f"(allow tiling to repeat it)")
    return tile(a, n)


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


class ArrivalProcess(Protocol):
    def times(self, n: int, rng: np.random.Generator) -> np.ndarray: ...


@dataclass(frozen=True)
class Poisson:
    rate: float  # requests per second

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return poisson(n, self.rate, rng)

    def describe(self) -> str:
        return f"Poisson arrivals at {self.rate:g} req/s"


@dataclass(frozen=True)
class Gamma:
    rate: float  # requests per second
    burstiness: float = 1.0  # gamma shape, vLLM's --burstiness; cv = 1/sqrt(burstiness)

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return gamma(n, self.rate, self.burstiness, rng)

    def describe(self) -> str:
        return f"gamma arrivals at {self.rate:g} req/s, burstiness {self.burstiness:g}"


@dataclass(frozen=True, eq=False)
class Replay:
    """A trace's arrival times, tiled in time when more requests are asked for."""

    arrival: np.ndarray
    tile_past_end: bool = True

    def times(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return replay(self.arrival, n, self.tile_past_end)

    def describe(self) -> str:
        a = np.asarray(self.arrival)
        return f"replay of {len(a)} trace arrivals" + (", tiled" if self.tile_past_end else "")
