"""Skip-join multi-level feedback queue, after FastServe (Wu et al., 2023).

Levels 0 (served first) to `levels - 1`. A request joins at the level whose quantum covers
its prompt (long prompts skip the top levels, so a long prefill cannot monopolise them);
after emitting a level's quantum of tokens it drops one level; quanta double per level.
Within a level, first come first served. Preemptive: a request demoted below a waiting one
is evicted (recompute, where FastServe would swap its KV to host memory). Quanta are in
output tokens, a proxy for FastServe's time quanta since a decode iteration emits one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.policy import Policy
from ..engine.request import Request


@dataclass(frozen=True, slots=True)
class SkipJoinLevel:
    levels: int = 8
    base_quantum: int = 32  # output tokens at level 0; doubles per level
    join_tokens: int = 512  # prompts up to this join level 0; each doubling one level lower

    def join(self, prompt_tokens: int) -> int:
        level, size = 0, self.join_tokens
        while prompt_tokens > size and level < self.levels - 1:
            level, size = level + 1, size * 2
        return level

    def __call__(self, req: Request, now: float) -> float:
        level = self.join(req.prompt_tokens)
        used = req.emitted
        quantum = self.base_quantum << level
        while used >= quantum and level < self.levels - 1:
            used -= quantum
            level += 1
            quantum <<= 1
        return float(level)


MLFQ = Policy(
    "mlfq", SkipJoinLevel(), victim="priority", preemptive=True,
    description="FastServe skip-join MLFQ: 8 levels, quanta 32 output tokens doubling per "
                "level, join level from prompt length (512 tokens per level); recompute on "
                "eviction",
)
