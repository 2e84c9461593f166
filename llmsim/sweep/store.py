"""A sweep's output folder: durable point by point, so that an interrupted sweep resumes.

    OUT/sweep.json         the grid, the workload's digest and the measured capacities: what
                           the points were run with; a rerun with anything else is refused
    OUT/points/<id>.json   one finished point's row, written whole (temporary file, fsync,
                           rename) the moment the point finishes
    OUT/results.parquet    every row in grid order, written (atomically) once all are done

A killed sweep leaves at worst a hidden temporary file, which the next run removes; every
point file present is complete, and is not computed again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..files import check_writable, read_json_object, write_atomic

RECORD = "sweep.json"
POINTS = "points"
RESULTS = "results.parquet"
CHECKED = ("grid", "workload", "capacity_rps")  # the record's parts a resume must match


class SweepMismatchError(ValueError):
    """The folder holds a sweep of another grid (or workload, or simulator)."""


class SweepFileError(ValueError):
    """A file of the sweep's folder is not what llmsim wrote there (edited, truncated)."""


def check(out: Path, force: bool = False) -> None:
    """Before any work: `out` can hold a sweep (new, a sweep's folder to resume, or with
    `force` a sweep's folder to replace)."""
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder")
        if not (out / RECORD).is_file() and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not a sweep's folder (no {RECORD}); "
                                  "choose another --out")
        if (out / RECORD).is_file() and not force:  # a damaged file is named before any work
            read_record(out)
            read_points(out, [p.stem for p in sorted((out / POINTS).glob("*.json"))])
    check_writable(out / RECORD)


def prepare(out: Path, record: dict, force: bool) -> None:
    """Make `out` a folder for the sweep `record` describes: new, or the same sweep's
    (resumed), or with `force` a replaced sweep folder. Refuses anything else."""
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder")
        is_sweep = (out / RECORD).is_file()
        if not is_sweep and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not a sweep's folder (no {RECORD}); "
                                  "choose another --out")
        if is_sweep:
            try:
                differs = _differences(read_record(out), _json_roundtrip(record))
            except SweepFileError:
                if not force:
                    raise
                differs = [RECORD]  # unreadable: --force starts over
            if not differs:
                return  # the same sweep: resume
            if not force:
                raise SweepMismatchError(
                    f"{out} holds another sweep ({', '.join(differs)} differ); pass --force to "
                    "discard its results and start over, or choose another --out")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / POINTS).mkdir(exist_ok=True)
    write_json(out / RECORD, record)


def read_record(out: Path) -> dict:
    path = Path(out) / RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not a sweep's folder: it has no {RECORD}")
    return read_json_object(path, SweepFileError, "sweep record")


def finished(out: Path) -> set[str]:
    """Ids of the points already persisted; removes temporary files a killed run left."""
    folder = out / POINTS
    for stale in folder.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    return {p.stem for p in folder.glob("*.json")}


def save_point(out: Path, row: dict) -> None:
    write_json(out / POINTS / f"{row['point_id']}.json", row)


def read_points(out: Path, ids: list[str]) -> list[dict]:
    """The rows of the given points that are finished, in the order given."""
    rows = []
    for point_id in ids:
        path = out / POINTS / f"{point_id}.json"
        if path.is_file():
            try:
                rows.append(read_json_object(path, SweepFileError, "point file"))
            except SweepFileError as e:
                raise SweepFileError(f"{e}; delete it and rerun the sweep to compute that "
                                     "point again") from None
    return rows


def write_results(out: Path, rows: list[dict]) -> pa.Table:
    table = pa.Table.from_pylist(rows)
    write_atomic(out / RESULTS, lambda tmp: pq.write_table(table, tmp))
    return table


def write_json(path: Path, obj) -> None:
    """Write `obj` to `path` whole or not at all, and durably (it survives a power cut).
    NaN is written as NaN (Python's JSON reads it back); nothing else here is not JSON."""
    text = json.dumps(obj, indent=1) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text), durable=True, clean=False)


def _differences(old: dict, new: dict) -> list[str]:
    """The checked parts of two sweep records that differ, grid fields by name."""
    out = []
    for part in CHECKED:
        a, b = old.get(part), new.get(part)
        if a == b:
            continue
        if part == "grid" and isinstance(a, dict):
            out += [f"grid {k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(part.replace("_rps", ""))
    return out


def _json_roundtrip(obj):
    """`obj` as it reads back from sweep.json (tuples become lists), for comparisons."""
    return json.loads(json.dumps(obj))


def load_rows(out: Path) -> tuple[dict, list[dict], bool]:
    """A sweep folder's record, its rows in grid order, and whether every point is there
    (a sweep still running, or interrupted, is read from its point files)."""
    out = Path(out)
    if not out.exists():
        raise FileNotFoundError(f"sweep results {out} do not exist")
    record = read_record(out)
    if (out / RESULTS).is_file():
        rows = pq.read_table(out / RESULTS).to_pylist()
    else:
        rows = read_points(out, record["points"])
    return record, rows, len(rows) == len(record["points"])
