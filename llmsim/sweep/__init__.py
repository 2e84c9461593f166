"""Sweeps: policies x loads x engine configs x seeds, run locally or on Ray, resumable;
reports (curves, CDFs, an HTML page) and the highest rate meeting an SLO per policy.

    from llmsim.sweep import Grid, run_sweep, report
    outcome = run_sweep(Grid(policies=("fcfs", "sjf"), loads=(0.5, 0.9)), "out/sweep", jobs=4)
    report("out/sweep", "out/sweep/report")

Modules: `grid` (the grid and its TOML form), `point` (one simulation -> one row),
`backends` (here, process pool, Ray), `store` (the resumable folder), `run`, `intervals`
(confidence intervals from seeds), `report`, `capacity` (bisection on an SLO), `cli`.
"""

from .grid import EngineVariant, Grid, Point, load_grid
from .run import SweepOutcome, run_sweep

__all__ = ["EngineVariant", "Grid", "Point", "SweepOutcome", "load_grid", "run_sweep"]
