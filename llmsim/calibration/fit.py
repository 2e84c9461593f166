"""Fit a GPU's free cost parameters to end-to-end measurements, one shared set for every
model shape measured on it.

`fit` takes `MeasuredPoint`s (any source: the ML.ENERGY loader, a live server's sweep),
simulates each run as it was measured (`measured.trace_point`, cached), and minimises the
log-ratio errors of median ITL, steady-state throughput and mean running batch with
bounded, robust (soft-L1 beyond 5%) least squares over the parameters in log space.
Prompt lengths that were not published are a nuisance: each prompt family's log-normal
(median, sigma) is chosen from a grid, family by family, by the same objective (two
sweeps of coordinate descent); the chosen values are reported beside the parameters.
`leave_one_out` refits without each group in turn and reports the held-out errors: nothing
about a held-out group is used to price it, its prompt-length distribution included (it
takes its family's value fitted on the others).

CPU cost: one unit-time simulation per (point, prompt setting), about 0.1-3 s each and
cached on disk; a fit then replays cached iteration traces (vectorised numpy, a few ms per
point per evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from .gpus import GpuSpec
from .measured import (
    IterationTrace,
    MeasuredPoint,
    Prediction,
    PromptLengths,
    replay,
    trace_point,
)
from .physical import PARAM_NAMES, GpuParams, PhysicalCostModel

FREE = ("weight_bandwidth", "gemm_flops", "attention_bandwidth", "attention_half_seqs",
        "sampling_passes",
        "seq_layer_s", "fixed_s", "per_layer_s", "norm_s", "cpu_fixed_s", "cpu_per_seq_s",
        "allreduce_latency_s")
MAX_MEDIAN_SAMPLES = 6000  # iterations kept for a run's median ITL (evenly strided)


def datasheet_start(gpu: GpuSpec) -> GpuParams:
    """Where a fit starts, and the value of every parameter it does not fit: datasheet
    peaks times typical efficiencies, engine overheads of the order vLLM shows."""
    return GpuParams(
        weight_bandwidth=0.85 * gpu.memory_bandwidth, gemm_flops=0.6 * gpu.peak_flops,
        gemm_tile_tokens=64.0, attention_bandwidth=0.7 * gpu.memory_bandwidth,
        attention_half_seqs=8.0,
        attention_flops=0.4 * gpu.peak_flops, sampling_passes=10.0, seq_layer_s=0.2e-6,
        fixed_s=1e-3, per_layer_s=20e-6, norm_s=3e-6, cpu_fixed_s=2e-3, cpu_per_seq_s=15e-6,
        allreduce_bandwidth=0.7 * gpu.interconnect_bandwidth, allreduce_latency_s=8e-6)


def datasheet_bounds(gpu: GpuSpec) -> dict[str, tuple[float, float]]:
    """Physical bounds: no efficiency above the datasheet, overheads non-negative and
    below what would dominate any iteration."""
    bw, fl = gpu.memory_bandwidth, gpu.peak_flops
    return {
        "weight_bandwidth": (0.3 * bw, bw), "gemm_flops": (0.15 * fl, fl),
        "gemm_tile_tokens": (1.0, 512.0), "attention_bandwidth": (0.05 * bw, bw),
        "attention_half_seqs": (0.01, 1024.0),
        "attention_flops": (0.05 * fl, fl), "sampling_passes": (0.5, 400.0),
        "seq_layer_s": (1e-10, 5e-6), "fixed_s": (1e-6, 10e-3), "per_layer_s": (1e-8, 200e-6),
        "norm_s": (1e-8, 50e-6),
        "cpu_fixed_s": (1e-6, 50e-3), "cpu_per_seq_s": (1e-8, 500e-6),
        "allreduce_bandwidth": (0.05 * gpu.interconnect_bandwidth,
                                gpu.interconnect_bandwidth),
        "allreduce_latency_s": (1e-7, 100e-6),
    }


@dataclass(frozen=True)
class Fitted:
    params: GpuParams
    prompts: dict[str, PromptLengths]  # per prompt family
    free: tuple[str, ...]
    cost: float  # robust cost of the log-ratio residuals (`robust_cost`)
    points: int
    evaluations: int
    history: list = field(default_factory=list)  # (family, PromptLengths, cost) tried
    unidentified: tuple[str, ...] = ()  # free parameters no run responds to (left at start)


class Problem:
    """Points with their traces under one prompt setting per family."""

    def __init__(self, points: Sequence[MeasuredPoint], traces: Sequence[IterationTrace],
                 async_scheduling: bool = True) -> None:
        assert len(points) == len(traces)
        self.points = list(points)
        self.traces = [t.coarsen() if t.weights is None else t for t in traces]
        self.async_scheduling = async_scheduling
        self._strides = [max(1, t.num_iterations // MAX_MEDIAN_SAMPLES) for t in traces]
        self.evaluations = 0

    def cost_model(self, point: MeasuredPoint, params: GpuParams) -> PhysicalCostModel:
        return PhysicalCostModel(point.model, point.tp, params, "fit",
                                 async_scheduling=self.async_scheduling)

    def predictions(self, params: GpuParams, fast: bool = False) -> list[Prediction]:
        """Each point's metrics under `params` (on coarsened traces, see
        `IterationTrace.coarsen`); `fast` takes each run's median ITL from an evenly strided
        sample of its iterations (what the optimiser uses)."""
        self.evaluations += 1
        out = []
        for p, t, k in zip(self.points, self.traces, self._strides, strict=True):
            times = self.cost_model(p, params).iteration_times(t.features)
            out.append(replay(t, times, stride=k if fast else 1))
        return out

    def residuals(self, params: GpuParams, fast: bool = True) -> np.ndarray:
        res = []
        for p, pred in zip(self.points, self.predictions(params, fast), strict=True):
            for want, got in ((p.median_itl_s, pred.median_itl_s),
                              (p.steady_output_tps, pred.steady_output_tps),
                              (p.mean_running, pred.mean_running)):
                if want is None:
                    continue
                res.append(math.log(got / want) if got > 0 and math.isfinite(got) else 5.0)
        return np.asarray(res)


ROBUST_SCALE = 0.05  # log-ratio errors beyond ~5% weigh less and less (soft L1)


def robust_cost(res: np.ndarray) -> float:
    """Soft-L1 cost of log-ratio residuals: quadratic within ROBUST_SCALE, linear beyond, so
    a few erratic runs do not drag the parameters every model shares."""
    z = (res / ROBUST_SCALE) ** 2
    return float(ROBUST_SCALE ** 2 * np.sum(np.sqrt(1 + z) - 1))


def fit_params(problem: Problem, start: GpuParams, free: Sequence[str],
               bounds: dict[str, tuple[float, float]], max_nfev: int = 400
               ) -> tuple[GpuParams, float]:
    """Robust least squares over `free` (log space, within bounds); the rest stay at
    `start`. Returns the parameters and their robust cost (`robust_cost`)."""
    base = start.to_dict()
    lo = np.log([bounds[n][0] for n in free])
    hi = np.log([bounds[n][1] for n in free])
    x0 = np.clip(np.log([max(base[n], 1e-30) for n in free]), lo + 1e-9, hi - 1e-9)

    def params_at(x) -> GpuParams:
        return GpuParams(**{**base, **dict(zip(free, np.exp(x).tolist(), strict=True))})

    sol = least_squares(lambda x: problem.residuals(params_at(x)), x0, bounds=(lo, hi),
                        method="trf", x_scale=1.0, diff_step=1e-3, max_nfev=max_nfev,
                        loss="soft_l1", f_scale=ROBUST_SCALE)
    best = params_at(sol.x)
    return best, robust_cost(problem.residuals(best, fast=False))


def prompt_grid(medians: Sequence[float] = (60, 120, 240, 480),
                sigmas: Sequence[float] = (1.0, 1.5, 2.0)) -> list[PromptLengths]:
    return [PromptLengths(m, s) for m in medians for s in sigmas]


def fit(points: Sequence[MeasuredPoint], gpu: GpuSpec, grid: Sequence[PromptLengths],
        free: Sequence[str] = FREE, start: GpuParams | None = None,
        bounds: dict | None = None, cache: Path | None = None, async_scheduling: bool = True,
        progress: Callable[[str], None] | None = None, sweeps: int = 2,
        traces: Callable | None = None) -> Fitted:
    """Fit `free` parameters of `gpu` (and each prompt family's distribution, from `grid`,
    for points whose prompts are unknown) to `points`."""
    if not points:
        raise ValueError("no measurements to fit")
    start = start or datasheet_start(gpu)
    bounds = {**datasheet_bounds(gpu), **(bounds or {})}
    free = tuple(n for n in free if _informative(n, points))
    unknown = sorted({p.prompt_family for p in points if p.prompt_tokens is None})
    if unknown and not grid:
        raise ValueError("prompt lengths are unknown and no prompt grid was given")
    get = traces or (lambda p, pr: trace_point(p, pr, cache=cache))
    chosen = {fam: grid[len(grid) // 2] for fam in unknown}
    history = []
    params, cost, evals = start, math.inf, 0

    def solve(prompts: dict[str, PromptLengths], at: GpuParams) -> tuple[GpuParams, float]:
        nonlocal evals
        tr = [get(p, prompts.get(p.prompt_family)) for p in points]
        prob = Problem(points, tr, async_scheduling)
        out = fit_params(prob, at, free, bounds)
        evals += prob.evaluations
        return out

    if not unknown:
        params, cost = solve({}, start)
    # One family: one pass over the grid is exhaustive; several: coordinate descent.
    for _ in range((sweeps if len(unknown) > 1 else 1) if unknown else 0):
        for fam in unknown:
            best = None
            for pr in grid:
                trial = {**chosen, fam: pr}
                if progress:
                    progress(f"fitting ({fam}: prompt median {pr.median:g}, sigma {pr.sigma:g})")
                got, c = solve(trial, params if math.isfinite(cost) else start)
                history.append((fam, pr, c))
                if best is None or c < best[2]:
                    best = (pr, got, c)
            chosen[fam], params, cost = best
    prob = Problem(points, [get(p, chosen.get(p.prompt_family)) for p in points],
                   async_scheduling)
    idle = insensitive(prob, params, free)
    params = replace(params, **{n: getattr(start, n) for n in idle})  # undo round-off drift
    return Fitted(params, chosen, free, cost, len(points), evals, history, idle)


def insensitive(problem: Problem, params: GpuParams, free: Sequence[str]) -> tuple[str, ...]:
    """Free parameters that move no residual when changed by 10% (e.g. CPU costs when the
    GPU bounds every step): the data says nothing about them."""
    base = problem.residuals(params, fast=False)
    out = []
    for n in free:
        for k in (1.1, 0.9):
            moved = problem.residuals(replace(params, **{n: getattr(params, n) * k}), fast=False)
            if np.max(np.abs(moved - base)) > 1e-9:
                break
        else:
            out.append(n)
    return tuple(out)


def _informative(name: str, points: Sequence[MeasuredPoint]) -> bool:
    """A parameter no point can move is not fitted (e.g. all-reduce without TP > 1)."""
    if name.startswith("allreduce"):
        return any(p.tp > 1 for p in points)
    return True


def predict_points(points: Sequence[MeasuredPoint], fitted: Fitted,
                   cache: Path | None = None, async_scheduling: bool = True,
                   traces: Callable | None = None) -> list[Prediction]:
    get = traces or (lambda p, pr: trace_point(p, pr, cache=cache))
    tr = [get(p, fitted.prompts.get(p.prompt_family)) for p in points]
    return Problem(points, tr, async_scheduling).predictions(fitted.params)


@dataclass(frozen=True)
class HeldOut:
    group: str
    fitted: Fitted  # on every other group
    points: list[MeasuredPoint]
    predictions: list[Prediction]


def leave_one_out(points: Sequence[MeasuredPoint], gpu: GpuSpec, grid: Sequence[PromptLengths],
                  groups: Sequence[str] | None = None,
                  progress: Callable[[str], None] | None = None, **kw) -> list[HeldOut]:
    """For each group (default: every group), fit on the other groups and predict it."""
    groups = list(groups or dict.fromkeys(p.group for p in points))
    out = []
    for g in groups:
        train = [p for p in points if p.group != g]
        test = [p for p in points if p.group == g]
        if not train or not test:
            raise ValueError(f"leave-one-out needs points in and out of group {g!r}")
        fams = {p.prompt_family for p in train}
        missing = {p.prompt_family for p in test if p.prompt_tokens is None} - fams
        if missing:
            raise ValueError(f"held-out group {g!r}: no other group has prompt family "
                             f"{sorted(missing)} to fit its prompt lengths on")
        report = (lambda msg, g=g: progress(f"[{g} held out] {msg}")) if progress else None
        fitted = fit(train, gpu, grid, progress=report, **kw)
        preds = predict_points(test, fitted, kw.get("cache"), kw.get("async_scheduling", True),
                               kw.get("traces"))
        out.append(HeldOut(g, fitted, test, preds))
    return out


def errors(points: Sequence[MeasuredPoint], preds: Sequence[Prediction]) -> dict[str, float]:
    """Mean absolute percentage errors over the points (fractions)."""
    def mape(want, got):
        pairs = [(w, g) for w, g in zip(want, got, strict=True) if w is not None]
        return float(np.mean([abs(g / w - 1) for w, g in pairs])) if pairs else math.nan

    return {"itl_mape": mape([p.median_itl_s for p in points], [q.median_itl_s for q in preds]),
            "tps_mape": mape([p.steady_output_tps for p in points],
                             [q.steady_output_tps for q in preds]),
            "running_mape": mape([p.mean_running for p in points], [q.mean_running for q in preds])}


def with_params(params: GpuParams, **changes) -> GpuParams:
    return replace(params, **changes)


__all__ = ["FREE", "PARAM_NAMES", "Fitted", "HeldOut", "Problem", "datasheet_bounds",
           "datasheet_start", "errors", "fit", "fit_params", "leave_one_out", "predict_points",
           "prompt_grid"]


def at_bound(fitted: Fitted, bounds: dict[str, tuple[float, float]]) -> dict[str, str]:
    """Free parameters the fit left at a bound (the data did not pin them)."""
    out = {}
    for n in fitted.free:
        v, (lo, hi) = getattr(fitted.params, n), bounds[n]
        if v <= lo * 1.001:
            out[n] = "lower"
        elif v >= hi * 0.999:
            out[n] = "upper"
    return out


def fitted_profile(fitted: Fitted, gpu: GpuSpec, source: str,
                   points: Sequence[MeasuredPoint], preds: Sequence[Prediction],
                   held_out: Sequence[HeldOut] = (), command: str = "",
                   bounds: dict | None = None, fixed_why: dict[str, str] | None = None):
    """The JSON-able profile of a fit: parameters with provenance, the prompt nuisance, the
    per-model errors in the fit (and held out, if given), every point real vs simulated."""
    from .fitted import FittedProfile

    bounds = {**datasheet_bounds(gpu), **(bounds or {})}
    edge = at_bound(fitted, bounds)
    groups = sorted({p.group for p in points})
    prov = {}
    for n in PARAM_NAMES:
        if n in fitted.unidentified:
            prov[n] = (f"not identified by {source}: no run responds to it (e.g. the GPU, "
                       "not the CPU, bounds every step), so it keeps the assumed start value")
        elif n in fitted.free:
            prov[n] = f"fitted to {source} ({len(points)} runs: {', '.join(groups)})"
            if n in edge:
                prov[n] += f"; at its {edge[n]} bound {bounds[n][edge[n] == 'upper']:.4g}"
        else:
            prov[n] = (fixed_why or {}).get(n) or FIXED_WHY.get(n, "assumed")
    per_group = {}
    for g in groups:
        pp = [(p, q) for p, q in zip(points, preds, strict=True) if p.group == g]
        per_group[g] = errors([p for p, _ in pp], [q for _, q in pp])
    fit = {
        "command": command,
        "prompt_lengths": {fam: {**pr.to_dict(), "provenance":
                                 "nuisance: log-normal fitted jointly (prompt lengths of these "
                                 "runs were not published)"}
                           for fam, pr in fitted.prompts.items()},
        "residual_cost": fitted.cost, "evaluations": fitted.evaluations,
        "in_fit": per_group,
        "points": [_point_json(p, q) for p, q in zip(points, preds, strict=True)],
    }
    if held_out:
        fit["held_out"] = {h.group: {**errors(h.points, h.predictions),
                                     "prompt_lengths": {f: pr.to_dict()
                                                        for f, pr in h.fitted.prompts.items()},
                                     "points": [_point_json(p, q) for p, q in
                                                zip(h.points, h.predictions, strict=True)]}
                           for h in held_out}
        worst_itl = max(v["itl_mape"] for v in fit["held_out"].values())
        worst_tps = max(v["tps_mape"] for v in fit["held_out"].values())
        fit["held_out_summary"] = (f"worst model: ITL MAPE {100 * worst_itl:.1f}%, throughput "
                                   f"MAPE {100 * worst_tps:.1f}%")
    return FittedProfile(gpu.name, source, fitted.params, prov, True, fit)


FIXED_WHY = {
    "gemm_tile_tokens": "assumed: half of a 128-token GEMM tile wasted on average",
    "attention_flops": "assumed: 40% of the datasheet BF16 peak (prefill attention is a small "
                       "share of chat runs, so the data cannot pin it)",
    "allreduce_bandwidth": "assumed: 70% of the datasheet NVLink bandwidth",
    "allreduce_latency_s": "assumed: 8 us per call (no tensor-parallel runs in the fit)",
}


def _point_json(p: MeasuredPoint, q: Prediction) -> dict:
    return {"label": p.label, "group": p.group, "tp": p.tp,
            "max_num_seqs": p.engine.max_num_seqs, "requests": p.num_requests,
            "median_itl_ms": [_r(p.median_itl_s, 1e3), _r(q.median_itl_s, 1e3)],
            "steady_output_tps": [_r(p.steady_output_tps), _r(q.steady_output_tps)],
            "mean_running": [_r(p.mean_running), _r(q.mean_running)]}


def _r(x, scale: float = 1.0):
    return None if x is None or not math.isfinite(x) else round(x * scale, 4)
