"""Whether a run fits this machine's memory, asked before anything is built: a request
costs its workload columns, its records and, while in flight, its engine state (about 150
bytes at 10 million requests, README's Speed section), and a run needs them all at once;
a replica costs its scheduler and queues."""

from __future__ import annotations

import os

BYTES_PER_REQUEST = 400  # measured ~150 at 10M requests; room for a policy's extra columns
BYTES_PER_REPLICA = 16 * 1024  # a replica's scheduler, pool, queues and counters, generously


def available_bytes() -> int | None:
    """Memory the system could give this process now (Linux MemAvailable; else physical
    memory); None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_memory(requests: int, what: str) -> None:
    _check(requests * BYTES_PER_REQUEST, f"{what} {requests:,}: a run of that many requests")


def check_replicas_fit(replicas: int) -> None:
    _check(replicas * BYTES_PER_REPLICA, f"{replicas:,} replicas")


def _check(need: int, what: str) -> None:
    have = available_bytes()
    if have is not None and need > have:
        raise ValueError(f"{what} would need about {_gb(need)} of memory, and this machine "
                         f"has {_gb(have)} free")


def _gb(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
