"""Shortest job first with the true output lengths: the limit a length predictor chases."""

from __future__ import annotations

from ..engine.request import Request
from .policy import Policy


def by_output_length(req: Request, now: float) -> float:
    return float(req.output_tokens)


SJF = Policy(
    "sjf", by_output_length, victim="priority",
    description="oracle shortest job first on true output length (non-preemptive admission)",
)
