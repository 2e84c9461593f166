"""llmsim's own trace formats: CSV to read and write by hand, Parquet for large workloads.

CSV: a header with `arrival_s,prompt_tokens,output_tokens` (seconds from the start,
>= 0; whole token counts >= 1) and, optionally, `prompt_id` (whole number >= 0), `model`,
`tenant`, `prompt_text`. Other columns are ignored.

Parquet: the same column names, typed (float64, int64, string), written by
`write_parquet` / `llmsim trace convert`. The workload's `source` and its JSON-able
`meta` travel in the file's schema metadata (`llmsim.source`, `llmsim.meta`), so a
converted trace still says where it came from; Mooncake's block hashes
(`meta["hash_ids"]`) travel as a `hash_ids` list column. Objects in meta that are not
JSON (a synthetic workload's prompt pool) are not written. Parquet has no lines: errors name the row
(0-based). Writes go to a temporary file beside the target that is renamed into place,
so an interrupted or failed write leaves nothing half-written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..files import write_atomic
from .assemble import assemble
from .block_hashes import BlockHashes
from .errors import TraceError
from .readers import Columns, fast_csv, read_csv
from .rows import RowChecker, fast_then_exact
from .workload import Workload

FIELDS = ("arrival_s", "prompt_tokens", "output_tokens")
TEXT = ("model", "tenant", "prompt_text")
OPTIONAL = ("prompt_id", *TEXT)
PARQUET_VERSION = "llmsim-parquet/1"


def load_llmsim_csv(path: str | Path) -> Workload:
    import pyarrow as pa

    path = Path(path)
    types = {"arrival_s": pa.float64(), "prompt_tokens": pa.int64(),
             "output_tokens": pa.int64()}
    optional = {"prompt_id": pa.int64(), **{name: None for name in TEXT}}
    return fast_then_exact(lambda: fast_csv(path, types, optional),
                           lambda: read_csv(path, FIELDS, OPTIONAL),
                           lambda cols: _build(path, "llmsim", cols, RowChecker(path, cols.lines)))


def load_parquet(path: str | Path) -> Workload:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise TraceError(f"{path}: not a readable Parquet file ({e})") from None
    for name in FIELDS:
        if name not in table.column_names:
            raise TraceError(f"{path}: no column {name!r} in {table.column_names}")
    values = {}
    for name in (*FIELDS, *OPTIONAL):
        if name not in table.column_names:
            continue
        col = table.column(name)
        if col.null_count:
            first = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise TraceError(f"{path}, row {first}: missing field {name!r}")
        values[name] = col.to_numpy(zero_copy_only=False)
    check = RowChecker(path, np.arange(table.num_rows), unit="row")
    stored = table.schema.metadata or {}
    stored_meta = json.loads(stored.get(b"llmsim.meta", b"{}"))
    row_meta = {}
    if "hash_ids" in table.column_names:
        col = table.column("hash_ids").combine_chunks()
        if col.null_count:
            raise TraceError(f"{path}: column 'hash_ids' has missing values")
        row_meta["hash_ids"] = BlockHashes.from_arrow(
            col, int(stored_meta.get("hash_ids_block_tokens", 512)),
            bool(stored_meta.get("hash_ids_cover_output", False)))
    workload = _build(path, "parquet", Columns(values, check.lines, table.column_names), check,
                      row_meta)
    origin = stored.get(b"llmsim.source")
    if origin:
        meta = dict(workload.meta)
        meta.update(stored_meta)
        meta.update(format="parquet", path=str(path))
        workload = Workload(workload.arrival, workload.prompt_tokens, workload.output_tokens,
                            workload.prompt_id, workload.prompt_text, workload.model,
                            workload.tenant, f"{workload.source}; converted from "
                            f"{origin.decode()}", meta)
    return workload


def _build(path: Path, fmt: str, cols, check: RowChecker, row_meta=None) -> Workload:
    v = cols.values
    arrival = check.seconds("arrival_s", v["arrival_s"])
    prompt = check.counts("prompt_tokens", v["prompt_tokens"])
    output = check.counts("output_tokens", v["output_tokens"])
    extra = {}
    if "prompt_id" in v:
        extra["prompt_id"] = check.counts("prompt_id", v["prompt_id"], minimum=0)
    for name in TEXT:
        if name in v:
            extra[name] = np.array(["" if x is None else str(x) for x in v[name]], dtype=object)
    check.done()
    return assemble(path, fmt, arrival, prompt, output, row_meta=row_meta, **extra)


def write_parquet(workload: Workload, out: str | Path) -> Path:
    """Write `workload` to `out` atomically (temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    columns = {"arrival_s": pa.array(workload.arrival, pa.float64()),
               "prompt_tokens": pa.array(workload.prompt_tokens, pa.int64()),
               "output_tokens": pa.array(workload.output_tokens, pa.int64())}
    if workload.prompt_id is not None:
        columns["prompt_id"] = pa.array(workload.prompt_id, pa.int64())
    for name in TEXT:
        col = getattr(workload, name)
        if col is not None:
            columns[name] = pa.array(col, pa.string())
    hashes = workload.meta.get("hash_ids")
    if isinstance(hashes, BlockHashes) and len(hashes) == len(workload):
        columns["hash_ids"] = pa.ListArray.from_arrays(pa.array(hashes.offsets, pa.int32()
                                                                if hashes.offsets[-1] < 2**31
                                                                else pa.int64()),
                                                       pa.array(hashes.ids, pa.int64()))
    meta = {k: v for k, v in workload.meta.items() if _jsonable(v)}
    if "hash_ids" in columns:
        meta["hash_ids_block_tokens"] = hashes.block_tokens
        meta["hash_ids_cover_output"] = hashes.covers_output
    table = pa.table(columns).replace_schema_metadata({
        "llmsim.format": PARQUET_VERSION, "llmsim.source": workload.source,
        "llmsim.meta": json.dumps(meta)})
    return write_atomic(out, lambda tmp: pq.write_table(table, tmp))


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
