"""First come, first served: vLLM's default policy."""

from __future__ import annotations

from ..engine.policy import Policy
from ..engine.request import Request


def by_arrival(req: Request, now: float) -> float:
    return req.arrival


FCFS = Policy(
    "fcfs", by_arrival, victim="last",
    description="first come, first served; preempts the most recently admitted request",
)
