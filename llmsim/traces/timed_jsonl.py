"""JSON-lines arrival traces with `timestamp`, `input_length`, `output_length` per request:
Mooncake's traces and vLLM's `timed_trace` dataset. The two differ in one way that the
fields cannot show, the unit of `timestamp`:

- `mooncake` (kvcache-ai/Mooncake FAST'25 traces): `timestamp` in milliseconds from the
  start; `hash_ids` lists the request's 512-token prompt blocks for prefix caching. They
  are kept, compactly, as `meta["hash_ids"]` (a `BlockHashes`, indexed by the rows as
  loaded: after `Workload.select(rows)` use `meta["hash_ids"].take(rows)`); pass
  `keep_hash_ids=False` to drop them.
- `timed_trace` (`vllm bench serve --dataset-name timed_trace`): `timestamp` in seconds,
  times `sec_multiplier` (vLLM's `--timed-trace-sec-multiplier`, default 1; 0.001 reads a
  Mooncake file the way vLLM is told to). Its optional `hash_ids` are kept the same way,
  with `chunk_hash_size` (vLLM's `--timed-trace-chunk-hash-size`, default 16) tokens each.

`load_trace` takes a JSON-lines file with these fields as `mooncake` when its first record
has `hash_ids` and as `timed_trace` otherwise; name the format to override.
"""

from __future__ import annotations

from pathlib import Path

from .assemble import assemble
from .block_hashes import BlockHashes
from .readers import fast_jsonl, read_jsonl
from .rows import RowChecker, fast_then_exact
from .workload import Workload

FIELDS = ("timestamp", "input_length", "output_length")


def load_mooncake(path: str | Path, keep_hash_ids: bool = True) -> Workload:
    return _load(Path(path), "mooncake", None, 512, keep_hash_ids)


def load_timed_trace(path: str | Path, sec_multiplier: float = 1.0, chunk_hash_size: int = 16,
                     keep_hash_ids: bool = True) -> Workload:
    if not sec_multiplier > 0:
        raise ValueError(f"sec_multiplier must be > 0, got {sec_multiplier}")
    return _load(Path(path), "timed_trace", sec_multiplier, chunk_hash_size, keep_hash_ids)


def _load(path: Path, fmt: str, scale: float | None, block_tokens: int, keep: bool) -> Workload:
    """`scale`: seconds per timestamp unit; None for milliseconds (divided by 1000, which
    keeps whole milliseconds exact, e.g. 5999 -> 5.999 rather than 5.9990000000000006)."""
    import pyarrow as pa

    types = {"timestamp": pa.float64(), "input_length": pa.int64(),
             "output_length": pa.int64()}
    optional = {"hash_ids": pa.list_(pa.int64())} if keep else {}
    return fast_then_exact(
        lambda: fast_jsonl(path, types, optional),
        lambda: read_jsonl(path, FIELDS, tuple(optional)),
        lambda cols: _build(path, fmt, cols, scale, block_tokens),
    )


def _build(path: Path, fmt: str, cols, scale: float | None, block_tokens: int) -> Workload:
    check = RowChecker(path, cols.lines)
    arrival = check.seconds("timestamp", cols.values["timestamp"])
    arrival = arrival / 1000.0 if scale is None else arrival * scale
    prompt = check.counts("input_length", cols.values["input_length"])
    output = check.counts("output_length", cols.values["output_length"])
    hashes = cols.values.get("hash_ids")
    row_meta = {}
    if hashes is not None:
        if cols.lines is None:
            row_meta["hash_ids"] = BlockHashes.from_arrow(hashes, block_tokens)
        else:
            for i, ids in enumerate(hashes):
                if not (isinstance(ids, list) and all(type(x) is int for x in ids)):
                    check.problem(i, "missing field 'hash_ids' (other rows have it)"
                                  if ids is None else
                                  "field 'hash_ids' is not a list of whole numbers")
                    break
            else:
                row_meta["hash_ids"] = BlockHashes.from_lists(hashes, block_tokens)
    check.done()
    unit = "ms" if scale is None else f"s x {scale:g}"
    return assemble(path, fmt, arrival, prompt, output, row_meta=row_meta,
                    notes=(f"timestamp in {unit}",))
