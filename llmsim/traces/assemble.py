"""The last step of every loader: put rows in arrival order and say what was done.

Policy, the same for every format:
- Rows out of time order are sorted by arrival, stably (rows with equal times keep their
  file order). The workload's `source` says so and `meta["rows_out_of_order"]` counts the
  rows that arrived before the row above them in the file; 0 when the file was sorted.
- Rows with the same arrival time are kept, all of them, in file order: real traces have
  them (Mooncake's conversation trace stamps its requests in steps of about 3 s, ~10
  requests per timestamp). `meta["duplicate_arrivals"]` counts rows that
  share their time with the row before.
- Formats without arrival times (length-only data such as ShareGPT or CASTILLO) get
  arrival 0 for every row and `meta["has_arrivals"] = False`: give them times with
  `Workload.with_arrivals(...)` and a process from `arrivals.py`, or use `synthesize`.
Every workload's `meta` also holds `format` and `path`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import TraceError
from .workload import Workload


def assemble(path: str | Path, fmt: str, arrival: np.ndarray, prompt: np.ndarray,
             output: np.ndarray, *, has_arrivals: bool = True, notes: tuple[str, ...] = (),
             meta: dict | None = None, row_meta: dict | None = None, **columns) -> Workload:
    """A `Workload` from checked columns. `columns` are the optional Workload columns
    (prompt_id, prompt_text, model, tenant); `row_meta` values are per-row objects with a
    `take(rows)` method, reordered with the rows and stored in meta."""
    n = len(arrival)
    if n == 0:
        raise TraceError(f"{path}: no rows (a header or nothing but blank lines)")
    meta = dict(meta or {})
    late = int(np.count_nonzero(np.diff(arrival) < 0))
    source = f"{path} ({fmt} format, {n} rows"
    source += ")" if has_arrivals else "; no arrival times in the file: all set to 0)"
    for note in notes:
        source += f"; {note}"
    if late:
        order = np.argsort(arrival, kind="stable")
        arrival, prompt, output = arrival[order], prompt[order], output[order]
        columns = {k: (None if v is None else v[order]) for k, v in columns.items()}
        row_meta = {k: v.take(order) for k, v in (row_meta or {}).items()}
        source += (f"; rows sorted by arrival time ({late} "
                   f"{'row was' if late == 1 else 'rows were'} earlier than the row above)")
    meta.update(row_meta or {})
    meta.update(format=fmt, path=str(path), has_arrivals=has_arrivals,
                rows_out_of_order=late,
                duplicate_arrivals=int(np.count_nonzero(np.diff(arrival) == 0)) if has_arrivals
                else 0)
    return Workload(arrival, prompt, output, source=source, meta=meta, **columns)
