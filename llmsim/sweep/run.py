"""Run every point of a grid into a results folder, skipping the points already there."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from .. import __version__
from ..capacity import capacity_rps
from ..cli_kit import progress as progress_bar
from ..traces.workload import Workload
from . import store
from .backends import backend
from .grid import Grid
from .point import PointTask, Shared, run_point


class SweepOutcome(NamedTuple):
    out: Path
    table: pa.Table  # results.parquet's rows
    computed: int  # points simulated by this call
    skipped: int  # points found finished in the folder


def run_sweep(grid: Grid, out: str | Path, jobs: int | None = 1, ray: str | None = None,
              force: bool = False, progress: bool = True,
              on_point: Callable[[dict], None] | None = None) -> SweepOutcome:
    """Simulate every point of `grid` not yet in `out`, persisting each as it finishes, then
    write `out/results.parquet`. `jobs` local worker processes (None: one per CPU), or Ray
    when `ray` is "auto", an address, or "local". `force` discards a folder holding another
    sweep. `on_point(row)` is called in this process after each point is persisted."""
    out = Path(out)
    store.check(out, force)  # before the capacity probe: a wrong --out fails at once
    workload = grid.workload()
    with progress_bar("", enabled=progress) as bar:
        probe = bar.add_task("capacity", total=None)
        capacities = measure_capacities(
            grid, workload, lambda done, total: bar.update(probe, completed=done, total=total))
    tasks = [PointTask(p, p.rate if p.rate is not None else p.load * capacities[p.engine],
                       capacities.get(p.engine))
             for p in grid.points()]
    with backend(jobs, ray) as run:  # Ray is reached before the folder is made
        store.prepare(out, sweep_record(grid, workload, capacities), force)
        done = store.finished(out)
        # The highest rates first: they take longest, and a long point started last would
        # keep the other workers idle at the end. The table keeps the grid's order.
        todo = sorted((t for t in tasks if t.point.id not in done), key=lambda t: -t.rate)
        with progress_bar("", remaining=True, enabled=progress) as bar:
            task_id = bar.add_task("sweep", total=len(tasks), completed=len(tasks) - len(todo))
            for i, row in run(run_point, Shared(grid, workload), todo):
                assert row["point_id"] == todo[i].point.id
                store.save_point(out, row)
                bar.advance(task_id)
                if on_point is not None:
                    on_point(row)
    rows = store.read_points(out, [t.point.id for t in tasks])
    assert len(rows) == len(tasks), "every point is persisted before the table is written"
    table = store.write_results(out, rows)
    return SweepOutcome(out, table, len(todo), len(tasks) - len(todo))


def measure_capacities(grid: Grid, workload: Workload,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """Each engine variant's saturated request rate on the workload (needed for loads only).
    Also builds each cost model, so that an unknown model or GPU fails before any point."""
    costs = {e.name: grid.deployment_for(e.name).cost_model() for e in grid.engines}
    caps = {}
    for e in grid.engines:
        if grid.axis == "load":
            caps[e.name] = float(capacity_rps(workload, grid.deployment_for(e.name),
                                              costs[e.name], progress))
    return caps


def sweep_record(grid: Grid, workload: Workload, capacities: dict[str, float]) -> dict:
    return {
        "llmsim_version": __version__,
        "grid": grid.to_dict(),
        "workload": {"source": workload.source, "requests": len(workload),
                     "digest": workload_digest(workload)},
        "capacity_rps": capacities,
        "axis": grid.axis,
        "points": [p.id for p in grid.points()],
    }


def workload_digest(workload: Workload) -> str:
    """What identifies the requests a sweep ran (their lengths; arrivals are redrawn)."""
    h = hashlib.sha256()
    for col in (workload.prompt_tokens, workload.output_tokens):
        h.update(np.ascontiguousarray(col, dtype="<i8").tobytes())
    return h.hexdigest()[:16]

