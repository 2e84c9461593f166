"""Result folders: written whole or not at all.

A run's folder is built under a temporary name beside the target and renamed into place
at the end, so an interrupted or failed run leaves no half-written results behind.

    OUT/config.json      resolved configuration (deployment, policies, workload, cost model)
    OUT/summary.json     run-level figures, one entry per policy
    OUT/<policy>/requests.parquet   per-request records
    OUT/.llmsim-output   the marker that lets --force replace this folder later
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .files import OutputExistsError, check_file, check_folder, write_folder_atomic, write_json
from .simulate import RunResult

__all__ = ["OutputExistsError", "check_file", "check_folder", "write_results"]


def write_results(out: Path, results: list[RunResult], config: dict, force: bool = False) -> None:
    check_folder(out, force)

    def fill(tmp: Path) -> None:
        write_json(tmp / "config.json", config)
        write_json(tmp / "summary.json", {r.policy: r.summary for r in results})
        for r in results:
            (tmp / r.policy).mkdir()
            pq.write_table(pa.table(r.records.columns()), tmp / r.policy / "requests.parquet")

    write_folder_atomic(out, fill)  # --force: the old folder goes once the new one is whole
