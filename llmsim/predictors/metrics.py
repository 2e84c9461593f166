"""How well scores rank prompts by output length.

Every figure compares scores with *single generations*, as the scheduler meets them: a
request's length is one sample, not the per-prompt mean. With S samples per prompt each
figure is the mean over the S columns. The noise ceiling is the same figure for the best
prompt-only predictor there can be, the mean of the other S-1 samples of the same prompt:
no predictor that sees only the prompt can be expected to beat it.

- kendall_tau: Kendall's tau-b (ties handled);
- spearman: Spearman's rho;
- pair_accuracy: over *impactful* pairs, those whose lengths differ by at least 20% of
  the larger (the pairs PARS trains on, where a wrong order costs the most), the share
  the scores order correctly (a tied score counts half).
"""

from __future__ import annotations

import numpy as np

IMPACT = 0.2  # |La - Lb| / max(La, Lb) >= IMPACT makes a pair impactful


def ranking_metrics(scores: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
    """Mean over samples of tau, rho and impactful-pair accuracy; lengths (n, samples)."""
    scores = np.asarray(scores, dtype=np.float64)
    lengths = _as_matrix(lengths)
    assert len(scores) == len(lengths), (len(scores), len(lengths))
    cols = [_one(scores, lengths[:, s]) for s in range(lengths.shape[1])]
    return {k: float(np.mean([c[k] for c in cols])) for k in cols[0]}


def noise_ceiling(lengths: np.ndarray) -> dict[str, float]:
    """The metrics of the mean of the other samples against each sample."""
    lengths = _as_matrix(lengths).astype(np.float64)
    s = lengths.shape[1]
    if s < 2:
        raise ValueError("a noise ceiling needs at least two samples per prompt")
    total = lengths.sum(axis=1)
    cols = [_one((total - lengths[:, k]) / (s - 1), lengths[:, k]) for k in range(s)]
    return {k: float(np.mean([c[k] for c in cols])) for k in cols[0]}


def _one(scores: np.ndarray, length: np.ndarray) -> dict[str, float]:
    from scipy import stats  # here, not at import: `llmsim --help` need not load scipy.stats

    return {"kendall_tau": float(stats.kendalltau(scores, length).statistic),
            "spearman": float(stats.spearmanr(scores, length).statistic),
            "pair_accuracy": pair_accuracy(scores, length)}


def pair_accuracy(scores: np.ndarray, length: np.ndarray, impact: float = IMPACT,
                  chunk: int = 2048) -> float:
    """Share of impactful pairs ordered right by `scores` (ties count half)."""
    length = np.asarray(length, dtype=np.float64)
    right = total = 0.0
    for lo in range(0, len(length), chunk):  # rows in chunks: n^2 pairs, bounded memory
        a, sa = length[lo:lo + chunk, None], scores[lo:lo + chunk, None]
        gap = np.abs(a - length[None, :]) / np.maximum(a, length[None, :])
        longer = (a > length[None, :]) & (gap >= impact)  # each pair once: row is longer
        agree = np.sign(sa - scores[None, :])
        total += longer.sum()
        right += ((agree > 0) + 0.5 * (agree == 0))[longer].sum()
    return float(right / total) if total else float("nan")


def _as_matrix(lengths: np.ndarray) -> np.ndarray:
    lengths = np.asarray(lengths)
    return lengths[:, None] if lengths.ndim == 1 else lengths
