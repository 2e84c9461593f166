"""Scheduling policies. `POLICIES` maps the CLI's names to policy objects; nothing else
registers anything: pass a `Policy` of your own to `llmsim.simulate` directly."""

from __future__ import annotations

from ..engine.policy import Policy, with_starvation_prevention
from ..errors import UnknownNameError
from .fcfs import FCFS
from .mlfq import MLFQ
from .oracle import SJF, SJF_UNCACHED, SRPT

POLICIES: dict[str, Policy] = {p.name: p for p in (FCFS, SJF, SRPT, MLFQ, SJF_UNCACHED)}


class UnknownPolicyError(UnknownNameError):
    pass


def get_policy(name: str) -> Policy:
    """A policy by name; `NAME+sp` adds starvation prevention with its default settings."""
    base, _, suffix = name.lower().partition("+")
    if base in POLICIES and suffix in ("", "sp"):
        return with_starvation_prevention(POLICIES[base]) if suffix else POLICIES[base]
    raise UnknownPolicyError(
        f"unknown policy {name!r}; known policies: {', '.join(sorted(POLICIES))} (add '+sp' "
        "for starvation prevention, e.g. sjf+sp)")


__all__ = ["FCFS", "MLFQ", "POLICIES", "SJF", "SRPT", "Policy", "UnknownPolicyError", "get_policy",
           "with_starvation_prevention"]
