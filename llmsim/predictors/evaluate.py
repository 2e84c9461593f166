"""How a predictor ranks held-out prompts, overall and per source dataset, next to the
noise ceiling of the same prompts: rank correlation (`metrics`) and scheduling value
(`cost_metrics`: the cost share it sends to the back, tail AUCs), with bootstrap
confidence intervals over prompts.

Lengths are capped at `cap` first when a server would cap them (`max_tokens`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .cost import RequestCost, capped
from .cost_metrics import leave_one_out_cost, scheduling_metrics
from .data import RankData
from .metrics import noise_ceiling, ranking_metrics

MIN_DATASET_PROMPTS = 10


def evaluate_scores(scores: np.ndarray, data: RankData, cost: RequestCost = RequestCost(),
                    cap: int | None = None, bootstrap: int = 0, seed: int = 0) -> dict:
    """{"all": metrics (+ "ci": {metric: [lo, hi]} with `bootstrap` resamples),
    "by_dataset": {name: metrics}} of `scores` (one per prompt)."""
    scores = np.asarray(scores, dtype=np.float64)
    lengths = capped(data.lengths, cap)

    def figures(rows: np.ndarray) -> dict[str, float]:
        return {**ranking_metrics(scores[rows], lengths[rows]),
                **scheduling_metrics(scores[rows], data.prompt_tokens[rows], lengths[rows],
                                     cost)}

    return _report(figures, data, bootstrap, seed)


def ceiling(data: RankData, cost: RequestCost = RequestCost(), cap: int | None = None,
            bootstrap: int = 0, seed: int = 0) -> dict | None:
    """The same figures for the best prompt-only predictor: each sample scored by the
    other samples of its prompt (their mean length for rank correlation, their mean cost
    for the scheduling figures). None when prompts have a single sample each. `perfect`
    holds the cost shares of ranking every sample by its own cost (oracle SJF's view)."""
    lengths = capped(data.lengths, cap)
    if lengths.shape[1] < 2:
        return None

    def figures(rows: np.ndarray) -> dict[str, float]:
        p, ln = data.prompt_tokens[rows], lengths[rows]
        return {**noise_ceiling(ln),
                **scheduling_metrics(leave_one_out_cost(p, ln, cost), p, ln, cost)}

    out = _report(figures, data, bootstrap, seed)
    own = cost(data.prompt_tokens, lengths)
    out["perfect"] = {k: v for k, v in scheduling_metrics(
        own, data.prompt_tokens, lengths, cost, tails=()).items()}
    return out


def evaluate_predictor(predictor, data: RankData,
                       progress: Callable[[int], None] | None = None, **options) -> dict:
    return evaluate_scores(predictor.score(data.text, data.prompt_tokens, progress), data,
                           **options)


def _report(figures: Callable[[np.ndarray], dict], data: RankData, bootstrap: int,
            seed: int) -> dict:
    everything = np.arange(len(data))
    out = {"all": {**figures(everything), "prompts": len(data)}, "by_dataset": {}}
    if bootstrap:
        out["all"]["ci"] = bootstrap_ci(figures, len(data), bootstrap,
                                        np.random.default_rng(seed))
    for name in sorted(set(data.dataset)):
        rows = np.flatnonzero(data.dataset == name)
        if len(rows) >= MIN_DATASET_PROMPTS:
            out["by_dataset"][name] = {**figures(rows), "prompts": int(len(rows))}
    return out


def bootstrap_ci(figures: Callable[[np.ndarray], dict], n: int, resamples: int,
                 rng: np.random.Generator, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile intervals of each figure over `resamples` resamplings of the n prompts
    with replacement (a prompt's samples travel together)."""
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        for k, v in figures(rng.integers(0, n, n)).items():
            draws.setdefault(k, []).append(v)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {k: ([float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))]
                if not np.all(np.isnan(v)) else [float("nan")] * 2)  # e.g. no tail at all
            for k, v in draws.items()}
