"""Vidur's processed traces (microsoft/vidur, data/processed_traces/).

- `vidur`: `arrived_at` (seconds from the start), `num_prefill_tokens`,
  `num_decode_tokens` -- the Splitwise/Azure traces as Vidur replays them.
- `vidur_stats`: length statistics with no arrival times, e.g.
  `arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv` with columns
  `num_prefill_tokens, num_decode_tokens, num_total_tokens, pd_ratio` (article -> human
  abstract lengths, not LLM outputs). Every row gets arrival 0 and the workload is marked
  `meta["has_arrivals"] = False`: it is a length distribution to draw from, and a replay
  of it would send everything at once. `num_total_tokens` and `pd_ratio` are derived
  columns and are not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .assemble import assemble
from .readers import fast_csv, read_csv
from .rows import RowChecker, fast_then_exact
from .workload import Workload

LENGTHS = ("num_prefill_tokens", "num_decode_tokens")
FIELDS = ("arrived_at", *LENGTHS)


def load_vidur(path: str | Path) -> Workload:
    import pyarrow as pa

    path = Path(path)
    types = {"arrived_at": pa.float64(), "num_prefill_tokens": pa.int64(),
             "num_decode_tokens": pa.int64()}
    return fast_then_exact(lambda: fast_csv(path, types), lambda: read_csv(path, FIELDS),
                           lambda cols: _build(path, cols, True))


def load_vidur_stats(path: str | Path) -> Workload:
    import pyarrow as pa

    path = Path(path)
    types = {name: pa.int64() for name in LENGTHS}
    return fast_then_exact(lambda: fast_csv(path, types), lambda: read_csv(path, LENGTHS),
                           lambda cols: _build(path, cols, False))


def _build(path: Path, cols, timed: bool) -> Workload:
    check = RowChecker(path, cols.lines)
    arrival = check.seconds("arrived_at", cols.values["arrived_at"]) if timed else None
    prompt = check.counts("num_prefill_tokens", cols.values["num_prefill_tokens"])
    output = check.counts("num_decode_tokens", cols.values["num_decode_tokens"])
    check.done()
    if not timed:
        return assemble(path, "vidur_stats", np.zeros(len(prompt)), prompt, output,
                        has_arrivals=False)
    return assemble(path, "vidur", arrival, prompt, output)
