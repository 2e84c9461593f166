"""Trace loaders: files in, `Workload` out, with errors that name the file, line and field.

Formats (chosen by `format=` or by the file's header):
- `llmsim`: CSV `arrival_s,prompt_tokens,output_tokens` (llmsim's own; what the bundled
  sample uses);
- `azure`: the Azure LLM inference trace CSV `TIMESTAMP,ContextTokens,GeneratedTokens`
  (timestamps become seconds from the first row).
Rows out of time order are sorted (stably) and the workload's source says so; simultaneous
arrivals are kept as they are.
"""

from __future__ import annotations

import csv
import math
from datetime import datetime
from pathlib import Path

import numpy as np

from .workload import Workload, WorkloadError

FORMATS = {
    "llmsim": ("arrival_s", "prompt_tokens", "output_tokens"),
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
}


class TraceError(WorkloadError):
    pass


def load_trace(path: str | Path, format: str | None = None) -> Workload:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such trace file")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path}: empty file")
        header = [h.strip() for h in header]
        fmt = format or _sniff(path, header)
        if fmt not in FORMATS:
            raise TraceError(f"{path}: unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
        cols = [_column(path, header, name) for name in FORMATS[fmt]]
        parse_time = _azure_time if fmt == "azure" else float
        times, prompts, outputs = [], [], []
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            t, p, o = (_field(path, line, row, header, i) for i in cols)
            times.append(_parse(path, line, header[cols[0]], t, parse_time))
            prompts.append(_count(path, line, header[cols[1]], p))
            outputs.append(_count(path, line, header[cols[2]], o))
    arrival = np.array(times, dtype=np.float64)
    if fmt == "azure" and len(arrival):
        arrival -= arrival.min()
    source = f"{path} ({fmt} format, {len(arrival)} rows)"
    order = np.argsort(arrival, kind="stable")
    if np.any(order != np.arange(len(order))):
        source += "; rows sorted by arrival time"
    return Workload(arrival[order], np.array(prompts)[order], np.array(outputs)[order],
                    source=source)


def _sniff(path: Path, header: list[str]) -> str:
    for fmt, cols in FORMATS.items():
        if all(c in header for c in cols):
            return fmt
    raise TraceError(f"{path}: cannot tell the format from the header {header}; expected the "
                     + " or ".join(f"{fmt} columns {','.join(c)}" for fmt, c in FORMATS.items()))


def _column(path: Path, header: list[str], name: str) -> int:
    try:
        return header.index(name)
    except ValueError:
        raise TraceError(f"{path}: no column {name!r} in header {header}") from None


def _field(path: Path, line: int, row: list[str], header: list[str], i: int) -> str:
    if i >= len(row) or not row[i].strip():
        raise TraceError(f"{path}, line {line}: missing field {header[i]!r}")
    return row[i].strip()


def _parse(path, line, name, text, parse):
    try:
        value = parse(text)
    except ValueError:
        raise TraceError(f"{path}, line {line}: field {name!r} is not a time: {text!r}") from None
    if not math.isfinite(value):
        raise TraceError(f"{path}, line {line}: field {name!r} is not finite: {text!r}")
    return value


def _count(path: Path, line: int, name: str, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{path}, line {line}: field {name!r} is not a number: {text!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise TraceError(f"{path}, line {line}: field {name!r} is not a whole number: {text!r}")
    if value < 1:
        raise TraceError(f"{path}, line {line}: field {name!r} must be >= 1, got {text}")
    return int(value)


def _azure_time(text: str) -> float:
    # '2023-11-16 18:15:46.6805900': seven fractional digits, more than strptime's %f takes
    stamp, _, frac = text.partition(".")
    base = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timestamp()
    return base + (float("0." + frac) if frac else 0.0)
