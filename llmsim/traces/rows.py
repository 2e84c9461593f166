"""Checking a trace's columns in bulk and naming the first bad row.

Why in bulk: converting a million-row column with numpy takes milliseconds where a Python
check per field would take seconds, so each column is converted and range-checked as an
array; only a column already known to hold a bad value is scanned value by value, to say
which one. Every check records a problem instead of raising at once, and `done()` raises
the one on the earliest row across all columns, so the message points at the first bad
line of the file whichever field is wrong there.

A checker made without line numbers (`lines=None`) is the fast path of a loader that read
the file with pyarrow: at the first doubt it raises `NeedLines`, and the loader re-reads
the file with Python's line-aware readers to produce the exact message.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

from .errors import TraceError

_TOO_LARGE = 2.0**53  # beyond this a float no longer holds every whole number


class NeedLines(Exception):
    """The fast path found a problem it cannot place; read the file again, line by line."""


def fast_then_exact(fast, exact, build):
    """`build(columns)` on the fast read when it gives one and finds nothing wrong, else on
    the exact, line-numbered read (which is also the one whose errors the user sees)."""
    columns = fast()
    if columns is not None:
        try:
            return build(columns)
        except NeedLines:
            pass
    return build(exact())


def is_missing(value) -> bool:
    """An absent field: a JSON null or key not present, or an empty CSV cell."""
    return value is None or (isinstance(value, str) and not value.strip())


class RowChecker:
    """Converts raw columns (lists of str/number, or numpy arrays) and keeps the earliest
    problem. `lines[i]` is where row i is in the file; `unit` says what that number is."""

    def __init__(self, path: str | Path, lines: np.ndarray | None, unit: str = "line"):
        self.path = path
        self.lines = lines
        self.unit = unit
        self._first: tuple[int, str] | None = None

    def problem(self, row: int, message: str) -> None:
        if self.lines is None:
            raise NeedLines(message)
        if self._first is None or row < self._first[0]:
            self._first = (row, message)

    def done(self) -> None:
        """Raise the problem on the earliest row, if any was found."""
        if self._first is not None:
            row, message = self._first
            raise TraceError(f"{self.path}, {self.unit} {self.lines[row]}: {message}")

    # -- conversions -------------------------------------------------------------------

    def numbers(self, name: str, values, what: str = "number") -> np.ndarray:
        """float64 column; missing, non-numeric and non-finite values are problems."""
        if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
            arr = values.astype(np.float64, copy=False)
        else:
            try:
                arr = np.array(values, dtype=np.float64)
                if arr.ndim != 1:
                    raise ValueError
            except (TypeError, ValueError):
                arr = self._scan(name, values, what)
        bad = np.flatnonzero(~np.isfinite(arr))
        if len(bad):
            i = int(bad[0])
            v = values[i]
            self.problem(i, f"missing field {name!r}" if is_missing(v)
                         else f"field {name!r} is not finite: {_show(v)}")
        return arr

    def counts(self, name: str, values, minimum: int = 1) -> np.ndarray:
        """int64 token counts: whole numbers >= `minimum`."""
        if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
            arr = values.astype(np.int64, copy=False)
            low = np.flatnonzero(arr < minimum)
            if len(low):
                i = int(low[0])
                self.problem(i, f"field {name!r} must be >= {minimum}, got {values[i]}")
            return arr
        arr = self.numbers(name, values)
        finite = np.isfinite(arr)
        frac = np.flatnonzero(finite & (arr != np.floor(arr)))
        if len(frac):
            i = int(frac[0])
            self.problem(i, f"field {name!r} is not a whole number: {_show(values[i])}")
        low = np.flatnonzero(finite & (arr < minimum))
        if len(low):
            i = int(low[0])
            self.problem(i, f"field {name!r} must be >= {minimum}, got {_text(values[i])}")
        big = np.flatnonzero(finite & (arr >= _TOO_LARGE))
        if len(big):
            i = int(big[0])
            self.problem(i, f"field {name!r} is too large: {_text(values[i])}")
        return np.where(finite & (arr < _TOO_LARGE), arr, minimum).astype(np.int64)

    def seconds(self, name: str, values) -> np.ndarray:
        """float64 times, finite and >= 0 (in the file's unit; the loader converts)."""
        arr = self.numbers(name, values, what="time")
        neg = np.flatnonzero(arr < 0)
        if len(neg):
            i = int(neg[0])
            self.problem(i, f"field {name!r} must be >= 0, got {_text(values[i])}")
        return arr

    def datetimes(self, name: str, values) -> np.ndarray:
        """int64 nanoseconds since the epoch from date-time text ('2023-11-16 18:15:46.68');
        a zone offset, when present, is applied (the result is UTC)."""
        if isinstance(values, np.ndarray) and values.dtype.kind == "M":
            arr = values.astype("datetime64[ns]")
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # numpy warns about zone offsets
                    arr = np.array(values, dtype="datetime64[ns]")
            except (TypeError, ValueError):
                arr = self._scan_datetimes(name, values)
        bad = np.flatnonzero(np.isnat(arr))
        if len(bad):
            i = int(bad[0])
            v = values[i]
            self.problem(i, f"missing field {name!r}" if is_missing(v)
                         else f"field {name!r} is not a time: {_show(v)}")
        return arr.view(np.int64)

    # -- the slow scans, run only on a column known to hold a bad value ------------------

    def _scan(self, name: str, values, what: str) -> np.ndarray:
        out = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            if is_missing(v):
                self.problem(i, f"missing field {name!r}")
                break
            try:
                if isinstance(v, (bool, list, dict)):
                    raise TypeError
                out[i] = float(v)
            except (TypeError, ValueError):
                self.problem(i, f"field {name!r} is not a {what}: {_show(v)}")
                break
        return out

    def _scan_datetimes(self, name: str, values) -> np.ndarray:
        out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
        for i, v in enumerate(values):
            if is_missing(v):
                self.problem(i, f"missing field {name!r}")
                break
            try:
                out[i] = _datetime(v)
            except (TypeError, ValueError):
                self.problem(i, f"field {name!r} is not a time: {_show(v)}")
                break
        return out


def _datetime(text: str) -> np.datetime64:
    if not isinstance(text, str):
        raise TypeError(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.datetime64(text.strip(), "ns")
    except ValueError:
        # e.g. an offset numpy no longer parses: let Python apply it, then drop it (UTC)
        stamp = datetime.fromisoformat(text.strip())
        if stamp.utcoffset() is not None:
            stamp = (stamp - stamp.utcoffset()).replace(tzinfo=None)
        return np.datetime64(stamp, "ns")


def _show(value) -> str:
    return repr(value.strip() if isinstance(value, str) else value)


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else str(value)
