"""What a trace looks like in numbers: size, span, rate and the length distributions.

Used by `llmsim trace info` and `plot`, and handy in notebooks. The mean rate is
(rows - 1) / duration -- gaps per second, the definition `arrivals.scale_to_rate` uses --
so a trace rescaled to r req/s reports r here. Quantiles are numpy's default (linear).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .workload import Workload


@dataclass(frozen=True)
class LengthStats:
    mean: float
    median: float
    p90: float
    p99: float
    max: int
    min: int

    @classmethod
    def of(cls, lengths: np.ndarray) -> LengthStats:
        p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
        return cls(float(lengths.mean()), float(p50), float(p90), float(p99),
                   int(lengths.max()), int(lengths.min()))


@dataclass(frozen=True)
class TraceSummary:
    rows: int
    has_arrivals: bool
    duration_s: float
    mean_rate_rps: float | None  # None when the trace has no arrival times or one row
    prompt: LengthStats
    output: LengthStats
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(w: Workload) -> TraceSummary:
    if not len(w):
        raise ValueError("the workload has no requests")
    timed = bool(w.meta.get("has_arrivals", True))
    rate = (len(w) - 1) / w.duration if timed and w.duration > 0 else None
    return TraceSummary(len(w), timed, w.duration if timed else 0.0, rate,
                        LengthStats.of(w.prompt_tokens), LengthStats.of(w.output_tokens),
                        w.source)


def arrival_rate(arrival: np.ndarray, bins: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """(bin start times, requests per second in each bin) over the trace's span."""
    a = np.asarray(arrival, dtype=np.float64)
    span = a[-1] - a[0] if len(a) else 0.0
    if not span > 0:
        raise ValueError("the arrivals span no time: there is no rate over time to show")
    counts, edges = np.histogram(a - a[0], bins=bins, range=(0.0, span))
    return edges[:-1], counts / (span / bins)
