"""Shortest job first on predicted lengths: any length predictor becomes a policy.

A predictor scores prompts (higher = longer expected output; any monotone scale). The
scores of a workload's requests, by request id, rank the waiting queue, exactly as the
oracle SJF ranks by true length; vLLM's priority victim rule applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..engine.policy import Policy
from ..engine.request import Request


@dataclass(frozen=True, eq=False)
class ScoreRank:
    scores: np.ndarray = field(repr=False)  # one per request id

    def __call__(self, req: Request, now: float) -> float:
        return float(self.scores[req.id])


def predicted_sjf(name: str, scores: np.ndarray, description: str = "",
                  scoring_delay: float = 0.0) -> Policy:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or not np.all(np.isfinite(scores)):
        raise ValueError(f"{name}: scores must be one finite number per request")
    return Policy(name, ScoreRank(scores), victim="priority", scoring_delay=scoring_delay,
                  description=description or f"shortest job first on {name}'s predicted lengths")
