"""Whether a run of N requests fits this machine's memory, asked before anything is built:
a request costs its workload columns, its records and, while in flight, its engine state
(about 150 bytes at 10 million requests, README's Speed section), and a run needs them
all at once."""

from __future__ import annotations

import os

BYTES_PER_REQUEST = 400  # measured ~150 at 10M requests; room for a policy's extra columns


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
    need = requests * BYTES_PER_REQUEST
    have = available_bytes()
    if have is not None and need > have:
        raise ValueError(f"{what} {requests:,}: a run of that many requests needs about "
                         f"{_gb(need)} of memory, and this machine has {_gb(have)} free")


def _gb(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
