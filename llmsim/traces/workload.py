"""A workload: the requests of a run as numpy columns, one row per request.

Columns, not objects, so that ten million requests fit in memory. Rows are kept sorted by
arrival time; the row index is the request id everywhere in llmsim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class WorkloadError(ValueError):
    """A workload that cannot be simulated; the message says which row and why."""


@dataclass(frozen=True, eq=False)
class Workload:
    arrival: np.ndarray  # float64 seconds from the start, non-decreasing
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1 (tokens the request will generate)
    prompt_id: np.ndarray | None = None  # optional int64 id into a prompt pool
    prompt_text: np.ndarray | None = None  # optional object array of str
    model: np.ndarray | None = None  # optional object array: per-request model name
    tenant: np.ndarray | None = None  # optional object array: per-request tenant
    source: str = "unknown"  # provenance, written beside every result
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        arrival = np.ascontiguousarray(self.arrival, dtype=np.float64)
        prompt = np.ascontiguousarray(self.prompt_tokens, dtype=np.int64)
        output = np.ascontiguousarray(self.output_tokens, dtype=np.int64)
        object.__setattr__(self, "arrival", arrival)
        object.__setattr__(self, "prompt_tokens", prompt)
        object.__setattr__(self, "output_tokens", output)
        n = len(arrival)
        for name in ("prompt_tokens", "output_tokens", "prompt_id", "prompt_text", "model",
                     "tenant"):
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise WorkloadError(f"column {name} has {len(col)} rows, arrival has {n}")
        _check_positive("prompt_tokens", prompt)
        _check_positive("output_tokens", output)
        if n and not np.all(np.isfinite(arrival)):
            bad = int(np.argmin(np.isfinite(arrival)))
            raise WorkloadError(f"arrival is not finite at row {bad}")
        if n and arrival[0] < 0:
            raise WorkloadError(f"arrival is negative at row 0: {arrival[0]}")
        if n > 1:
            back = np.flatnonzero(np.diff(arrival) < 0)
            if len(back):
                i = int(back[0]) + 1
                raise WorkloadError(
                    f"arrivals must be sorted: row {i} arrives at {arrival[i]} before row {i - 1} "
                    f"at {arrival[i - 1]}"
                )

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def duration(self) -> float:
        return float(self.arrival[-1] - self.arrival[0]) if len(self) > 1 else 0.0

    def head(self, n: int) -> Workload:
        """The first n requests (in arrival order)."""
        return self.select(slice(0, n))

    def select(self, rows) -> Workload:
        """A workload of the given rows (a slice or a sorted index array)."""

        def cut(col):
            return None if col is None else col[rows]

        meta = dict(self.meta)
        hashes = meta.get("hash_ids")
        if hashes is not None and hasattr(hashes, "take"):  # prefix-cache block ids, per row
            meta["hash_ids"] = hashes.take(np.arange(len(self))[rows])
        return Workload(
            self.arrival[rows], self.prompt_tokens[rows], self.output_tokens[rows],
            cut(self.prompt_id), cut(self.prompt_text), cut(self.model), cut(self.tenant),
            self.source, meta,
        )

    def with_arrivals(self, arrival: np.ndarray, note: str) -> Workload:
        """The same requests at new arrival times; `note` is appended to the provenance."""
        return Workload(
            arrival, self.prompt_tokens, self.output_tokens, self.prompt_id, self.prompt_text,
            self.model, self.tenant, f"{self.source}; {note}", dict(self.meta),
        )


def _check_positive(name: str, col: np.ndarray) -> None:
    bad = np.flatnonzero(col < 1)
    if len(bad):
        i = int(bad[0])
        raise WorkloadError(f"{name} must be >= 1: row {i} has {col[i]} ({len(bad)} such rows)")
