"""Reading a trace file's raw records together with the line each one is on.

Two ways for each text format, with the same result on a clean file:
- fast (`fast_csv`, `fast_jsonl`): pyarrow parses straight to typed arrays, no Python
  object per field, so a many-million-row trace loads in seconds and little memory; it
  returns None at the first sign of trouble (a bad value, a missing field, a malformed
  line), because it cannot say on which line the trouble is;
- exact (`read_csv`, `read_jsonl`): Python's csv/json, one row at a time, keeping each
  row's line number so the checks in `rows.py` can name it.
Blank lines are skipped by both. Values are kept as read (str for CSV, JSON values for
JSONL, None for an absent field); conversion and checking happen in `rows.RowChecker`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TraceError


@dataclass
class Columns:
    """Raw values per field (lists, or arrays from the fast path) and each row's line."""

    values: dict
    lines: np.ndarray | None  # None from the fast path, which knows no line numbers
    header: list[str]

    def __len__(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0


def csv_header(path: Path) -> list[str]:
    """The stripped names in the first row of a CSV file."""
    with _open(path) as f:
        try:
            header = next(csv.reader(f), None)
        except (csv.Error, UnicodeDecodeError) as e:
            raise TraceError(f"{path}, line 1: not a CSV header ({e})") from None
    if not header:
        raise TraceError(f"{path}: empty file, expected a CSV header")
    return [h.strip() for h in header]


def read_csv(path: Path, fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> Columns:
    """Exact path: every row's `fields` (and whichever `optional` ones the header has)."""
    with _open(path) as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise TraceError(f"{path}: empty file, expected a CSV header") from None
        index = {}
        for name in fields:
            if name not in header:
                raise TraceError(f"{path}: no column {name!r} in header {header}")
            index[name] = header.index(name)
        index.update({name: header.index(name) for name in optional if name in header})
        values = {name: [] for name in index}
        lines = []
        try:
            for row in reader:
                if not row or not any(c.strip() for c in row):
                    continue
                lines.append(reader.line_num)
                for name, i in index.items():
                    values[name].append(row[i].strip() if i < len(row) else None)
        except csv.Error as e:
            raise TraceError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from None
        except UnicodeDecodeError as e:
            raise TraceError(f"{path}, after line {reader.line_num}: not UTF-8 text ({e.reason})"
                             ) from None
    return Columns(values, np.array(lines, dtype=np.int64), header)


def fast_csv(path: Path, types: dict, optional: dict | None = None) -> Columns | None:
    """Fast path: the columns named in `types` (pyarrow types; None keeps text) plus those of
    `optional` the header has; None if anything is not clean."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = csv_header(path)
    if any(name not in header for name in types):
        return None
    wanted = dict(types)
    wanted.update({k: v for k, v in (optional or {}).items() if k in header})
    string_columns = [k for k, v in wanted.items() if v is None]
    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            include_columns=list(wanted),
            column_types={k: (v if v is not None else pa.string()) for k, v in wanted.items()},
            strings_can_be_null=False,
        ))
    except (pa.ArrowException, OSError, ValueError):
        return None
    return _columns(table, string_columns, header)


def read_jsonl(path: Path, fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> Columns:
    """Exact path: one JSON object per line; an absent key reads as None."""
    names = fields + tuple(optional)
    values = {name: [] for name in names}
    lines = []
    with _open(path) as f:
        number = 0
        try:
            for number, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as e:
                    raise TraceError(f"{path}, line {number}: not valid JSON ({e.msg}, "
                                     f"column {e.colno})") from None
                if not isinstance(record, dict):
                    raise TraceError(f"{path}, line {number}: expected a JSON object, got "
                                     f"{type(record).__name__}")
                lines.append(number)
                for name in names:
                    values[name].append(record.get(name))
        except UnicodeDecodeError as e:
            raise TraceError(f"{path}, line {number + 1}: not UTF-8 text ({e.reason})") from None
    present = [n for n in optional if any(v is not None for v in values[n])]
    kept = {n: v for n, v in values.items() if n in fields or n in present}
    return Columns(kept, np.array(lines, dtype=np.int64), list(names))


def fast_jsonl(path: Path, types: dict, optional: dict | None = None) -> Columns | None:
    """Fast path for JSON lines: `types` maps each field to a pyarrow type (None for text).
    Returns None if anything is not clean; optional fields absent from every row are
    dropped, and partly present ones send the caller to the exact path."""
    import pyarrow as pa
    import pyarrow.json as pajson

    wanted = dict(types)
    wanted.update(optional or {})
    schema = pa.schema([(k, v if v is not None else pa.string()) for k, v in wanted.items()])
    try:
        table = pajson.read_json(path, parse_options=pajson.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore"))
    except (pa.ArrowException, OSError, ValueError):
        return None
    for name in optional or {}:
        if table.column(name).null_count == table.num_rows:
            table = table.drop_columns([name])
    return _columns(table, [k for k, v in wanted.items() if v is None], list(wanted))


def _columns(table, string_columns: list[str], header: list[str]) -> Columns | None:
    if table.num_rows == 0 or any(c.null_count for c in table.columns):
        return None  # a missing value: the exact path says where
    values = {}
    for name in table.column_names:
        col = table.column(name)
        if name in string_columns:
            values[name] = col.to_numpy(zero_copy_only=False)
        elif hasattr(col.type, "value_type"):  # a list column: keep the arrow array
            values[name] = col.combine_chunks()
        else:
            values[name] = col.to_numpy()
    return Columns(values, None, header)


def _open(path: Path):
    # utf-8-sig: a byte-order mark, as spreadsheet exports write it, is not part of a name
    return Path(path).open(newline="", encoding="utf-8-sig")
