"""Training rows and what a predictor learns and is selected on.

`Rows`: one row per (prompt, LLM) whose lengths are trained on, the scored LLM's first,
with lengths capped as a server with `max_tokens` would run them. `label`: the value a
ranking objective orders, a prompt's expected cost over its samples (`cost`) or its mean
length (`mean_length`). `validation_figure`: what early stopping and model selection
maximise on held-out prompts: the share of the FCFS -> SJF gap a one-server batch queue
would see closed (`batch_gap`, pair order weighted by cost difference), the mean cost
share of the top 1, 2 and 5% of the ranking (`cost_share`; see `cost_metrics`), or
Kendall tau with the mean length (`tau`, the original PARS criterion).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .cost import RequestCost, capped
from .cost_metrics import FRACTIONS, batch_gap, top_share
from .data import RankData, text_key

TARGETS = ("cost", "mean_length")
SELECT = ("batch_gap", "cost_share", "tau")


@dataclass(frozen=True, eq=False)
class Rows:
    """Training rows: one per (prompt, LLM), the scored LLM's first."""

    texts: list[str]
    keys: np.ndarray  # object: prompt identity (text hash): folds split by prompt
    prompt_tokens: np.ndarray
    lengths: np.ndarray  # (rows, samples), capped as configured
    model: np.ndarray  # int: 0 the scored LLM, then `extra` in order

    @classmethod
    def of(cls, train: RankData, extra: Sequence[RankData], cap: int) -> Rows:
        parts = [train, *extra]
        width = min(p.lengths.shape[1] for p in parts)
        return cls([t for p in parts for t in p.text],
                   np.array([text_key(t) for p in parts for t in p.text], dtype=object),
                   np.concatenate([p.prompt_tokens for p in parts]),
                   capped(np.concatenate([p.lengths[:, :width] for p in parts]), cap or None),
                   np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)]))


def label(rows: Rows, target: str) -> np.ndarray:
    """Per-row value the objective orders: expected cost or mean length."""
    if target == "cost":
        return RequestCost()(rows.prompt_tokens, rows.lengths).mean(axis=1)
    return rows.lengths.mean(axis=1).astype(np.float64)


def validation_figure(scores: np.ndarray, rows: Rows, held: np.ndarray, select: str) -> float:
    """What early stopping maximises on held-out rows (of the scored LLM)."""
    from scipy import stats

    if select == "tau":
        return float(stats.kendalltau(scores, rows.lengths[held].mean(axis=1)).statistic)
    costs = RequestCost()(rows.prompt_tokens[held], rows.lengths[held])
    if select == "batch_gap":
        return float(np.mean([batch_gap(scores, costs[:, s]) for s in range(costs.shape[1])]))
    return float(np.mean([top_share(scores, costs[:, s], f) for f in FRACTIONS
                          for s in range(costs.shape[1])]))
