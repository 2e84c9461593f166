"""Routers: which replica a new request goes to. A router is a callable
`(request, replicas) -> index`; state, if any, lives in the router object."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .replica import Replica
from .request import Request

Router = Callable[[Request, Sequence[Replica]], int]


class RoundRobin:
    """Replicas in turn, whatever their load."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self, req: Request, replicas: Sequence[Replica]) -> int:
        i = self._next % len(replicas)
        self._next += 1
        return i


def least_tokens(req: Request, replicas: Sequence[Replica]) -> int:
    """The replica with the fewest tokens in flight (prompt + emitted tokens of its unfinished
    requests): what a real router can know, without output lengths. Ties go to the lowest index."""
    return min(range(len(replicas)), key=lambda i: replicas[i].outstanding_tokens)


class CacheAffinity:
    """The replica holding the longest cached prefix of the request's prompt (prefix
    caching), unless it is loaded well above the least-loaded one: then the least-loaded
    (least-tokens). The guard: outstanding tokens more than `slack` x the least plus
    `margin` tokens. Ties in prefix go to the less loaded, then the lowest index."""

    def __init__(self, slack: float = 0.5, margin: int = 16_384) -> None:
        self.slack, self.margin = slack, margin

    def __call__(self, req: Request, replicas: Sequence[Replica]) -> int:
        least = least_tokens(req, replicas)
        bound = replicas[least].outstanding_tokens * (1 + self.slack) + self.margin
        best, best_key = least, (-1, 0)
        for i, r in enumerate(replicas):
            if r.outstanding_tokens > bound:
                continue
            key = (r.pool.peek(req), -r.outstanding_tokens)
            if key > best_key:
                best, best_key = i, key
        return best


ROUTERS: dict[str, Callable[[], Router]] = {
    "round-robin": RoundRobin,
    "least-tokens": lambda: least_tokens,
    "cache-affinity": CacheAffinity,
}


def make_router(name: str) -> Router:
    try:
        return ROUTERS[name]()
    except KeyError:
        raise ValueError(f"unknown router {name!r}; known routers: {', '.join(ROUTERS)}") from None
