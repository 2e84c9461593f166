"""The three ways the neural predictors learn to order prompts by output length.

- `pars`: pairwise. Pairs (a, b) whose lengths differ by at least 20% of the larger
  (|La - Lb| / max(La, Lb) >= 0.2), `partners` random partners per prompt per epoch;
  `MarginRankingLoss(margin=1)` asks the longer prompt to score at least 1 above the other.
- `pointwise`: regression of the log length (SSJF / S3 style), mean squared error.
- `listmle`: listwise. Random lists of `list_size` prompts; the Plackett-Luce likelihood
  of their true order, longest first (ListMLE, as in vllm-ltr).

A prompt's label is the mean of its sampled lengths: the sample noise is not the signal.
"""

from __future__ import annotations

import numpy as np

OBJECTIVES = ("pars", "pointwise", "listmle")


def sample_pairs(length: np.ndarray, partners: int, min_gap: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) row pairs, a's length > b's, with partners drawn per prompt among those at
    least `min_gap` apart (relative to the larger); uniform over the allowed partners."""
    n = len(length)
    order = np.argsort(length, kind="stable")
    y = length[order]
    # Sorted, a prompt's allowed partners are a prefix (<= (1-gap) y) and a suffix (>= y/(1-gap)).
    below = np.searchsorted(y, y * (1 - min_gap), side="right")
    above = np.searchsorted(y, y / (1 - min_gap), side="left")
    allowed = below + (n - above)
    has = np.flatnonzero(allowed > 0)
    if not len(has):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    i = np.repeat(has, partners)
    u = (rng.random(len(i)) * allowed[i]).astype(np.int64)
    j = np.where(u < below[i], u, above[i] + u - below[i])
    a, b = order[i], order[j]
    longer = length[a] > length[b]
    return np.where(longer, a, b), np.where(longer, b, a)


def sample_lists(n: int, list_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random partition of n rows into lists of `list_size` (the last may be shorter)."""
    perm = rng.permutation(n)
    return [perm[lo:lo + list_size] for lo in range(0, n, list_size) if n - lo >= 2]


def pairwise_loss(score_a, score_b, margin: float):
    """Margin ranking loss with target +1: score_a should exceed score_b by `margin`."""
    import torch

    return torch.nn.functional.margin_ranking_loss(
        score_a, score_b, torch.ones_like(score_a), margin=margin)


def listmle_loss(scores, length):
    """Plackett-Luce negative log-likelihood of the order longest-first; one list."""
    import torch

    s = scores[torch.argsort(length, descending=True, stable=True)]
    # -log P = sum_k [ log sum_{m >= k} exp(s_m) - s_k ]
    tail = torch.logcumsumexp(s.flip(0), dim=0).flip(0)
    return (tail - s).sum() / len(s)


def pointwise_target(length: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Standardised log length, with the (mean, std) to report predictions back."""
    z = np.log(length)
    mu, sd = float(z.mean()), float(z.std() or 1.0)
    return (z - mu) / sd, mu, sd
