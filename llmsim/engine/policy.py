"""What a scheduling policy is to the engine: a rank for waiting requests and a victim rule.

A policy ranks a request when it enters the waiting queue (on arrival and again after a
preemption); the queue serves the lowest (rank, arrival, id) first, as vLLM's priority
heap does with `Request.priority`. When the KV pool runs dry, the victim rule picks whom
to preempt: `"last"` is vLLM's FCFS rule (the most recently admitted running request),
`"priority"` its priority rule (the running request with the largest (rank, arrival)).
A `preemptive` policy may also evict running requests for a waiting one that ranks
better (SRPT, MLFQ); its ranks may change as requests progress, so running requests are
ranked afresh whenever they are compared.
Ranks are plain functions of the request and the clock, so policies pickle and compose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from .request import Request

RankFn = Callable[[Request, float], float]


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    rank: RankFn  # lower is served first
    victim: Literal["last", "priority"] = "priority"
    description: str = ""
    preemptive: bool = False  # evict a worse-ranked running request for the waiting head
    starvation: tuple[int, int] | None = None  # (threshold, quantum) in iterations, or None
    scoring_delay: float = 0.0  # seconds a batch of arrivals spends being scored (a ranker)
    cache_aware: bool = False  # its rank reads `Request.cached_hint` (prefix caching): the
    # replica looks the prompt up in its cache on arrival only for such a policy

    def __post_init__(self) -> None:
        if self.victim not in ("last", "priority"):
            raise ValueError(f"victim must be 'last' or 'priority', got {self.victim!r}")
        if self.starvation is not None and min(self.starvation) < 1:
            raise ValueError(f"starvation (threshold, quantum) must be >= 1, got {self.starvation}")
        if not self.scoring_delay >= 0:
            raise ValueError(f"scoring_delay must be >= 0, got {self.scoring_delay}")
        if self.preemptive and self.victim != "priority":
            raise ValueError("a preemptive policy picks victims by rank: victim='priority'")


def with_starvation_prevention(policy: Policy, threshold: int = 100, quantum: int = 20) -> Policy:
    """`policy`, except that a request left waiting `threshold` iterations is promoted ahead of
    those not promoted, until it has run `quantum` iterations; promoted requests are served
    among themselves in the policy's order (vllm-ltr's starvation prevention)."""
    return replace(policy, name=f"{policy.name}+sp", starvation=(threshold, quantum),
                   description=f"{policy.description}; starvation prevention: promoted after "
                               f"{threshold} iterations waiting, until it has run {quantum}")
