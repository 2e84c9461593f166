"""How a predictor ranks one model's held-out prompts, overall and per source dataset,
next to the noise ceiling of the same prompts (see `metrics`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .data import RankData
from .metrics import noise_ceiling, ranking_metrics


def evaluate_scores(scores: np.ndarray, data: RankData) -> dict:
    """{"all": metrics, "by_dataset": {name: metrics}} of `scores` (one per prompt)."""
    out = {"all": {**ranking_metrics(scores, data.lengths), "prompts": len(data)},
           "by_dataset": {}}
    for name in sorted(set(data.dataset)):
        rows = np.flatnonzero(data.dataset == name)
        if len(rows) >= 10:
            out["by_dataset"][name] = {**ranking_metrics(scores[rows], data.lengths[rows]),
                                       "prompts": int(len(rows))}
    return out


def ceiling(data: RankData) -> dict:
    """The same figures for the mean of the other samples (the noise ceiling)."""
    out = {"all": {**noise_ceiling(data.lengths), "prompts": len(data)}, "by_dataset": {}}
    for name in sorted(set(data.dataset)):
        rows = np.flatnonzero(data.dataset == name)
        if len(rows) >= 10:
            out["by_dataset"][name] = {**noise_ceiling(data.lengths[rows]),
                                       "prompts": int(len(rows))}
    return out


def evaluate_predictor(predictor, data: RankData,
                       progress: Callable[[int], None] | None = None) -> dict:
    return evaluate_scores(predictor.score(data.text, data.prompt_tokens, progress), data)
