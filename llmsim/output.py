"""Result folders: written whole or not at all.

A run's folder is built under a temporary name beside the target and renamed into place
at the end, so an interrupted or failed run leaves no half-written results behind.

    OUT/config.json      resolved configuration (deployment, policies, workload, cost model)
    OUT/summary.json     run-level figures, one entry per policy
    OUT/<policy>/requests.parquet   per-request records
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .simulate import RunResult
from .traces.atomic import write_folder_atomic


class OutputExistsError(FileExistsError):
    pass


def check_target(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise OutputExistsError(f"{out} already exists; pass --force to replace it")


def write_results(out: Path, results: list[RunResult], config: dict, force: bool = False) -> None:
    check_target(out, force)

    def fill(tmp: Path) -> None:
        _dump(tmp / "config.json", config)
        _dump(tmp / "summary.json", {r.policy: r.summary for r in results})
        for r in results:
            (tmp / r.policy).mkdir()
            pq.write_table(pa.table(r.records.columns()), tmp / r.policy / "requests.parquet")

    write_folder_atomic(out, fill)  # --force: the old folder goes once the new one is whole


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(finite_json(obj), indent=2) + "\n")


def finite_json(obj):
    """JSON has no NaN: null for figures that do not exist (e.g. TPOT of 1-token runs), and
    numpy scalars as Python numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return finite_json(obj.item())
    return obj
