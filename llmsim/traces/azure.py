"""Azure LLM inference trace CSV (Azure/AzurePublicDataset, the Splitwise paper's trace).

    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:15:46.6805900,374,44

TIMESTAMP is wall-clock time with 7 fractional digits; arrivals become seconds from the
earliest row (the first row, as the published files are sorted), with nanosecond
precision and no time-zone or daylight-saving shift (parsed as numpy datetime64, not local
time). `meta["start_time"]` keeps the original first timestamp. ContextTokens -> prompt
tokens, GeneratedTokens -> output tokens, both must be whole numbers >= 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .assemble import assemble
from .readers import fast_csv, read_csv
from .rows import RowChecker, fast_then_exact
from .workload import Workload

FIELDS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def load_azure(path: str | Path) -> Workload:
    import pyarrow as pa

    path = Path(path)
    types = {"TIMESTAMP": pa.timestamp("ns"), "ContextTokens": pa.int64(),
             "GeneratedTokens": pa.int64()}
    return fast_then_exact(lambda: fast_csv(path, types), lambda: read_csv(path, FIELDS),
                           lambda cols: _build(path, cols))


def _build(path: Path, cols) -> Workload:
    check = RowChecker(path, cols.lines)
    ns = check.datetimes("TIMESTAMP", cols.values["TIMESTAMP"])
    prompt = check.counts("ContextTokens", cols.values["ContextTokens"])
    output = check.counts("GeneratedTokens", cols.values["GeneratedTokens"])
    check.done()
    start = ns.min()
    arrival = (ns - start) / 1e9
    meta = {"start_time": str(np.datetime64(int(start), "ns"))}
    return assemble(path, "azure", arrival, prompt, output, meta=meta)
