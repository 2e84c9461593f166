"""Scheduling policies. `POLICIES` maps the CLI's names to policy objects; nothing else
registers anything: pass a `Policy` of your own to `llmsim.simulate` directly."""

from __future__ import annotations

from .fcfs import FCFS
from .oracle import SJF, SRPT
from .policy import Policy

POLICIES: dict[str, Policy] = {p.name: p for p in (FCFS, SJF, SRPT)}


class UnknownPolicyError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name.lower()]
    except KeyError:
        raise UnknownPolicyError(
            f"unknown policy {name!r}; known policies: {', '.join(sorted(POLICIES))}"
        ) from None


__all__ = ["FCFS", "POLICIES", "SJF", "SRPT", "Policy", "UnknownPolicyError", "get_policy"]
