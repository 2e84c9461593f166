"""Run-level figures from the per-request records: latency statistics, throughput, goodput."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .records import Records

LATENCIES = ("ttft", "tpot", "e2e", "queueing_delay", "normalized_latency")


@dataclass(frozen=True, slots=True)
class Slo:
    """Service-level objectives in seconds; a request meets them when it meets every one set."""

    ttft: float | None = None
    tpot: float | None = None
    e2e: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft", "tpot", "e2e"):
            bound = getattr(self, name)
            if bound is not None and not (bound > 0 and math.isfinite(bound)):
                raise ValueError(f"the {name.upper()} objective must be finite and > 0, "
                                 f"got {bound} s")

    def to_dict(self) -> dict:
        return asdict(self)

    def met(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        ok = ~np.isnan(cols["finish"])
        for name in ("ttft", "tpot", "e2e"):
            bound = getattr(self, name)
            if bound is not None:
                # a one-token request has no TPOT: it cannot miss a TPOT objective
                ok &= np.nan_to_num(cols[name], nan=0.0) <= bound
        return ok


def stats(values: np.ndarray) -> dict[str, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return {"mean": math.nan, "median": math.nan, "p90": math.nan, "p99": math.nan}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "median": float(p50), "p90": float(p90),
            "p99": float(p99)}


def summarize(records: Records, engine_stats: dict, slo: Slo = Slo()) -> dict:
    cols = records.columns()
    done = records.completed
    n_done = int(done.sum())
    start = float(records.arrival.min()) if len(records) else 0.0
    end = float(np.nanmax(records.finish)) if n_done else start
    span = end - start
    out_tokens = int(records.output_tokens[done].sum())
    summary = {
        "requests": len(records),
        "completed": n_done,
        "rejected": int(records.rejected.sum()),
        "duration_s": span,
        "throughput_rps": n_done / span if span > 0 else math.nan,
        "throughput_output_tps": out_tokens / span if span > 0 else math.nan,
        "preemptions": int(records.preemptions.sum()),
        # prefix caching: prompt tokens of completed requests found cached at admission
        "cached_tokens": int(records.cached_tokens[done].sum()),
        "prefix_hit_rate": (float(records.cached_tokens[done].sum()
                                  / records.prompt_tokens[done].sum()) if n_done else 0.0),
        "preempted_requests": int((records.preemptions > 0).sum()),
    }
    for name in LATENCIES:
        summary[name] = stats(cols[name][done])
    itl = records.itl
    summary["itl"] = {"mean": itl.mean, "median": itl.quantile(0.5), "p90": itl.quantile(0.9),
                      "p99": itl.quantile(0.99)}
    met = slo.met(cols)
    summary["slo"] = slo.to_dict()
    summary["slo_attainment"] = float(met.sum() / len(records)) if len(records) else math.nan
    summary["goodput_rps"] = float(met.sum() / span) if span > 0 else math.nan
    summary.update(engine_stats)
    return summary
