"""End-to-end measurements of a serving engine, simulated the way they were measured.

A `MeasuredPoint` is one benchmark run: a model on a GPU with engine settings, N requests
all sent at t=0 with known output lengths (and known or unknown prompt lengths), and what
the run reported: the median inter-token latency over every token of the run, the
steady-state output throughput, the mean running batch in the steady state.

With every request queued at t=0 and FCFS, the engine's schedule (which requests run in
which iteration) does not depend on how long iterations take. So one simulation with unit
iteration times (`trace_point`) records every iteration's work once, and any cost model
then prices the whole run as a vector of iteration times (`replay`): this is what makes
fitting a cost model to many runs cheap. The metrics follow the ML.ENERGY benchmark's
definitions (`ml-energy/benchmark`, `ml-energy/data`):

- steady state: from the moment the B-th request (B = max_num_seqs) receives its first
  token to the moment N - B - 1 requests have finished;
- steady-state output throughput: tokens emitted in that window / its length;
- mean running batch: the time-average of the running requests over that window;
- median ITL: the median over every inter-token gap of every request, the whole run.

A decoding request's gap is the iteration it decoded in. Gaps that span several iterations
(a request preempted and recomputed; rare) are priced at their length in iterations times
the run's mean iteration time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.special import ndtri

from ..engine.config import EngineConfig
from ..engine.cost import IterationShape
from ..policies import FCFS
from ..traces.workload import Workload
from .physical import Features, PhysicalCostModel, features
from .shapes import ModelShape

TRACE_VERSION = 1  # bump when what a trace records changes: cached traces are then redone


@dataclass(frozen=True, slots=True)
class PromptLengths:
    """The prompt-length distribution of runs that did not publish it: log-normal with this
    median and sigma, cut at `max_tokens` (longer prompts were refused by the server)."""

    median: float
    sigma: float = 1.0
    max_tokens: int = 16384

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n lengths at evenly spaced quantiles (no sampling noise), in random order."""
        q = (np.arange(n) + 0.5) / n
        x = np.exp(np.log(self.median) + self.sigma * ndtri(q))
        return rng.permutation(np.clip(np.rint(x), 1, self.max_tokens).astype(np.int64))

    def to_dict(self) -> dict:
        return {"median": self.median, "sigma": self.sigma, "max_tokens": self.max_tokens}


@dataclass(frozen=True, eq=False)
class MeasuredPoint:
    """One measured run; a target that was not measured is None."""

    label: str  # e.g. "Qwen3-8B H100 tp1 max_num_seqs=64"
    group: str  # what leave-one-out holds out together (e.g. the model)
    model: ModelShape
    tp: int
    engine: EngineConfig  # with num_gpu_blocks resolved
    output_tokens: np.ndarray  # one per request, every request sent at t=0
    prompt_family: str  # which prompt-length distribution applies (e.g. the tokenizer)
    median_itl_s: float | None = None
    steady_output_tps: float | None = None
    mean_running: float | None = None
    prompt_tokens: np.ndarray | None = None  # known prompt lengths, else PromptLengths draws
    meta: dict = field(default_factory=dict)

    @property
    def num_requests(self) -> int:
        return len(self.output_tokens)

    def key(self) -> str:
        """What decides the schedule, hashed: model shape, TP, engine, lengths."""
        h = hashlib.sha1()
        h.update(json.dumps([self.model.to_dict(), self.tp, self.engine.to_dict(),
                             TRACE_VERSION], sort_keys=True).encode())
        h.update(np.ascontiguousarray(self.output_tokens, np.int64).tobytes())
        if self.prompt_tokens is not None:
            h.update(np.ascontiguousarray(self.prompt_tokens, np.int64).tobytes())
        return h.hexdigest()[:16]


class Prediction(NamedTuple):
    median_itl_s: float
    steady_output_tps: float
    mean_running: float


@dataclass(frozen=True, eq=False)
class IterationTrace:
    """Every iteration of one simulated run (arrays in iteration order) and where its
    steady state starts and ends (iteration counts: the window runs from the end of
    iteration `start` to the end of iteration `end`)."""

    features: Features  # of numpy arrays
    start: int
    end: int
    long_gaps: np.ndarray  # inter-token gaps spanning several iterations, in iterations
    num_requests: int
    weights: np.ndarray | None = None  # iterations each row stands for (coarsened traces)

    @property
    def num_iterations(self) -> int:
        return len(self.features.tokens)

    def coarsen(self, run: int = 16) -> IterationTrace:
        """Merge up to `run` consecutive decode-only iterations of the same batch into one
        row at their mean context (their times are affine in it, so sums are kept up to
        the rare switch between CPU- and GPU-bound within a run). Rows stay split at the
        steady-state window's ends. For fitting: 10-20x fewer rows on small batches."""
        assert self.weights is None, "already coarsened"
        f = self.features
        n = self.num_iterations
        plain = ((f.pf_pairs == 0) & (f.pf_kv == 0) & (f.tokens == f.decodes)
                 & (f.seqs == f.decodes) & (f.sampled == f.decodes))
        key = np.where(plain, f.decodes, -1.0 - np.arange(n))
        change = np.ones(n, bool)
        change[1:] = key[1:] != key[:-1]
        for i in (self.start, self.end):
            if 0 <= i < n:
                change[i] = True
        run_start = np.maximum.accumulate(np.where(change, np.arange(n), 0))
        first = change | ((np.arange(n) - run_start) % run == 0)
        starts = np.flatnonzero(first)
        count = np.diff(np.append(starts, n)).astype(np.float64)
        sums = {k: np.add.reduceat(np.asarray(v, np.float64), starts)
                for k, v in f._asdict().items()}
        merged = Features(**{k: (sums[k] / count if k == "context" else
                                 np.asarray(getattr(f, k), np.float64)[starts]
                                 if k in ("tokens", "seqs", "decodes", "sampled") else sums[k])
                             for k in Features._fields})
        group = np.cumsum(first) - 1
        where = {i: (int(group[i]) if i < n else len(starts)) for i in (self.start, self.end)}
        return IterationTrace(merged, where[self.start], where[self.end], self.long_gaps,
                              self.num_requests, count)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, start=self.start, end=self.end, long_gaps=self.long_gaps,
                            num_requests=self.num_requests,
                            **{k: np.asarray(v) for k, v in self.features._asdict().items()})
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> IterationTrace:
        with np.load(path) as z:
            f = Features(*(z[k] for k in Features._fields))
            return cls(f, int(z["start"]), int(z["end"]), z["long_gaps"], int(z["num_requests"]))


class _Recorder:
    """A cost model that prices every iteration at 1 and keeps its features."""

    label = "recording (unit iteration times)"

    def __init__(self, window: int) -> None:
        self.window = window
        self.rows: list[Features] = []

    def iteration_time(self, shape: IterationShape) -> float:
        self.rows.append(features(shape, self.window))
        return 1.0


def workload_of(point: MeasuredPoint, prompts: PromptLengths | None, seed: int = 0) -> Workload:
    """The run's requests: all at t=0, output lengths in random order (fixed seed), prompts
    as measured or drawn from `prompts`."""
    rng = np.random.default_rng(seed)
    n = point.num_requests
    out = rng.permutation(np.asarray(point.output_tokens, np.int64))
    if point.prompt_tokens is not None:
        prompt = np.asarray(point.prompt_tokens, np.int64)
    elif prompts is None:
        raise ValueError(f"{point.label}: prompt lengths unknown and no distribution given")
    else:
        prompt = prompts.draw(n, rng)
    return Workload(np.zeros(n), prompt, out, source=f"as measured: {point.label}")


def trace_point(point: MeasuredPoint, prompts: PromptLengths | None, seed: int = 0,
                cache: Path | None = None) -> IterationTrace:
    """Simulate the run once with unit iteration times and record it (cached on disk by
    what decides the schedule)."""
    from ..simulate import Deployment, simulate

    path = None
    if cache is not None:
        extra = json.dumps([prompts.to_dict() if prompts and point.prompt_tokens is None
                            else None, seed])
        tag = hashlib.sha1((point.key() + extra).encode()).hexdigest()[:20]
        path = Path(cache) / f"{tag}.npz"
        if path.exists():
            return IterationTrace.load(path)
    assert point.engine.num_gpu_blocks is not None, "resolve num_gpu_blocks first"
    w = workload_of(point, prompts, seed)
    rec = _Recorder(point.model.sliding_window)
    result = simulate(w, FCFS, Deployment(engine=point.engine), cost=rec)
    r = result.records
    if r.rejected.any():
        raise ValueError(f"{point.label}: {int(r.rejected.sum())} requests can never fit in "
                         f"{point.engine.num_gpu_blocks} KV blocks")
    n = len(w)
    b = min(point.engine.max_num_seqs, n)
    start = int(round(np.sort(r.first_token)[b - 1]))
    k = n - b - 1
    end = int(round(np.sort(r.finish)[k - 1])) if k >= 1 else start
    cols = np.asarray(rec.rows, dtype=np.float64).T
    trace = IterationTrace(Features(*cols), start, max(end, start), _long_gaps(r.itl), n)
    if path is not None:
        trace.save(path)
    return trace


def _long_gaps(itl) -> np.ndarray:
    """Gaps of more than one iteration (unit-time run), one entry per gap."""
    centres = 10 ** (itl._log_low + (np.arange(itl.num_bins) - 0.5) / itl.per_decade)
    keep = (centres > 1.5) & (itl.counts > 0)
    return np.repeat(np.rint(centres[keep]), itl.counts[keep])


def replay(trace: IterationTrace, times: np.ndarray, stride: int = 1) -> Prediction:
    """The run's metrics if its iterations took `times` seconds; `stride` > 1 takes the
    median ITL from every stride-th iteration only (a systematic sample, for speed)."""
    f = trace.features
    d = np.asarray(times, np.float64)
    w = trace.weights if trace.weights is not None else np.ones(len(d))
    dw = d * w
    # Median over every inter-token gap: decodes see their iteration; long gaps span several.
    values, weights = d[::stride], (f.decodes * w)[::stride]
    if len(trace.long_gaps):
        values = np.concatenate([values, trace.long_gaps * (dw.sum() / w.sum())])
        weights = np.concatenate([weights, np.full(len(trace.long_gaps), 1.0 / stride)])
    itl = weighted_median(values, weights)
    clock = np.cumsum(dw)
    s, e = trace.start, trace.end
    t0 = clock[s - 1] if s >= 1 else 0.0
    span = clock[e - 1] - t0 if e > s else 0.0
    if span > 0:
        tps = float((f.sampled[s:e] * w[s:e]).sum() / span)
        running = float((f.seqs[s:e] * dw[s:e]).sum() / span)
    else:
        tps = running = float("nan")
    return Prediction(itl, tps, running)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    keep = weights > 0
    v, w = values[keep], weights[keep]
    if not len(v):
        return float("nan")
    order = np.argsort(v, kind="stable")
    cw = np.cumsum(w[order])
    i = int(np.searchsorted(cw, 0.5 * cw[-1]))
    return float(v[order][min(i, len(v) - 1)])


def predict(point: MeasuredPoint, cost: PhysicalCostModel, trace: IterationTrace) -> Prediction:
    return replay(trace, cost.iteration_times(trace.features))


def with_blocks(point: MeasuredPoint, num_gpu_blocks: int) -> MeasuredPoint:
    return replace(point, engine=replace(point.engine, num_gpu_blocks=num_gpu_blocks))
