"""Shortest job first and shortest remaining first with the true output lengths: the
limits a length predictor chases."""

from __future__ import annotations

from ..engine.policy import Policy
from ..engine.request import Request


def by_output_length(req: Request, now: float) -> float:
    return float(req.output_tokens)


SJF = Policy(
    "sjf", by_output_length, victim="priority",
    description="oracle shortest job first on true output length (non-preemptive admission)",
)


def by_remaining_tokens(req: Request, now: float) -> float:
    return float(req.remaining_tokens)


SRPT = Policy(
    "srpt", by_remaining_tokens, victim="priority", preemptive=True,
    description="oracle shortest remaining processing time on true output length; preempts a "
                "running request with more tokens left for a waiting one with fewer",
)


def by_uncached_work(req: Request, now: float) -> float:
    return float(req.prompt_tokens - req.cached_hint + req.output_tokens)


SJF_UNCACHED = Policy(
    "sjf-uncached", by_uncached_work, victim="priority", cache_aware=True,
    description="oracle shortest job first on the tokens left to compute: prompt tokens not "
                "found in the prefix cache on arrival, plus the true output length (with "
                "--no-enable-prefix-caching, prompt + output)",
)
