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


ROUTERS: dict[str, Callable[[], Router]] = {
    "round-robin": RoundRobin,
    "least-tokens": lambda: least_tokens,
}


def make_router(name: str) -> Router:
    try:
        return ROUTERS[name]()
    except KeyError:
        raise ValueError(f"unknown router {name!r}; known routers: {', '.join(ROUTERS)}") from None
