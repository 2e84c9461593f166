"""How much scheduling value a ranking holds: where the costly requests land.

A scheduler ordering by score serves the highest scores last. What decides mean latency
is whether the few requests that hold most of the GPU time (see `cost`) are among them:

- cost_share_top{1,2,5}: the share of all cost held by the requests the scores put in
  the top 1, 2 and 5% (the back of the queue). Per sample column, then the mean over the
  columns (each column is one generation per prompt, as a scheduler meets them); a tie
  at the cut counts pro rata (prompt length ties a lot).
- auc_{2k,8k}: the area under the ROC curve of the scores for "this generation reaches
  2,000 (8,000) tokens", over every (prompt, sample) pair; ties count half.
- batch_gap: the share of the FCFS -> SJF gap in mean completion time that the ranking
  closes when one server runs these requests as a batch in score order (FCFS being a
  random order). Exactly: the sum over pairs of |cost_a - cost_b|, + when the scores
  order the pair right, - when wrong, 0 when tied, over the sum of |cost_a - cost_b|:
  pair accuracy weighted by what a wrong order costs. 1 is oracle SJF, 0 random, and a
  random subset of the requests (a queue in a burst) has the same figure in expectation.

Scores may be one per prompt (a predictor) or one per (prompt, sample) (the noise
ceiling, which scores each sample by the other samples' mean cost, and the perfect
ranking, which scores each sample by its own cost).
"""

from __future__ import annotations

import numpy as np

from .cost import RequestCost

FRACTIONS = (0.01, 0.02, 0.05)
TAILS = (2000, 8000)


def tail_name(threshold: int) -> str:
    return f"auc_{threshold // 1000}k" if threshold % 1000 == 0 else f"auc_{threshold}"


def share_name(fraction: float) -> str:
    return f"cost_share_top{fraction * 100:g}"


def scheduling_metrics(scores: np.ndarray, prompt_tokens: np.ndarray, lengths: np.ndarray,
                       cost: RequestCost = RequestCost(), fractions=FRACTIONS,
                       tails=TAILS) -> dict[str, float]:
    """Cost shares at the back of the ranking and tail AUCs (see the module docstring)."""
    lengths = np.asarray(lengths)
    lengths = lengths[:, None] if lengths.ndim == 1 else lengths
    score = _per_sample(scores, lengths.shape)
    costs = cost(prompt_tokens, lengths)
    out = {share_name(f): float(np.mean([top_share(score[:, s], costs[:, s], f)
                                         for s in range(lengths.shape[1])]))
           for f in fractions}
    for t in tails:
        out[tail_name(t)] = auc(score.ravel(), lengths.ravel() >= t)
    out["batch_gap"] = float(np.mean([batch_gap(score[:, s], costs[:, s])
                                      for s in range(lengths.shape[1])]))
    return out


def batch_gap(scores: np.ndarray, costs: np.ndarray) -> float:
    """Cost-difference-weighted pair concordance (see the module docstring), in
    O(n log n): each request against those scored below and above it."""
    scores = np.asarray(scores, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    n = len(costs)
    order = np.argsort(scores, kind="stable")
    s, c = scores[order], costs[order]
    prefix = np.concatenate([[0.0], np.cumsum(c)])
    below = np.searchsorted(s, s, side="left")  # requests scored strictly lower
    above = np.searchsorted(s, s, side="right")  # ... and n - this: strictly higher
    num = (c * below - prefix[below]).sum() - (c * (n - above) - (prefix[n] - prefix[above])).sum()
    by_cost = np.sort(costs)
    before = np.cumsum(by_cost) - by_cost  # sum of the cheaper ones
    den = 2.0 * (by_cost * np.arange(n) - before).sum()
    return float(num / den) if den > 0 else float("nan")


def top_share(scores: np.ndarray, costs: np.ndarray, fraction: float) -> float:
    """Share of the total cost held by the ceil(fraction * n) highest scores; the tied
    group at the cut contributes its mean cost per place it fills."""
    n = len(scores)
    total = float(costs.sum())
    if n == 0 or total <= 0:
        return float("nan")
    k = int(np.ceil(fraction * n))
    order = np.argsort(-scores, kind="stable")
    cut = scores[order[k - 1]]
    above = scores > cut
    tied = scores == cut
    room = k - int(above.sum())
    taken = costs[above].sum() + room * costs[tied].mean()
    return float(taken / total)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney U)."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks: ties count half
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def leave_one_out_cost(prompt_tokens: np.ndarray, lengths: np.ndarray,
                       cost: RequestCost = RequestCost()) -> np.ndarray:
    """(prompts, samples): each sample scored by the mean cost of the prompt's other
    samples, the best a prompt-only predictor can know of it."""
    c = cost(prompt_tokens, lengths)
    s = c.shape[1]
    if s < 2:
        raise ValueError("a noise ceiling needs at least two samples per prompt")
    return (c.sum(axis=1, keepdims=True) - c) / (s - 1)


def _per_sample(scores: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        assert len(scores) == shape[0], (len(scores), shape)
        return np.broadcast_to(scores[:, None], shape)
    assert scores.shape == shape, (scores.shape, shape)
    return scores
