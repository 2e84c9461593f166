"""The commands `llmsim sweep`, `llmsim report` and `llmsim capacity-search`: parse, check,
print; the work is in the package. Mounted on llmsim's typer app by llmsim/cli.py; each
function is a typer command on its own as well (`typer.run(sweep)`)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer

from ..cli_kit import console, duration, err, progress, table, user_errors
from ..files import check_file, write_atomic
from . import store
from .capacity import CapacityAnswer, SloTarget, capacity_search
from .grid import Grid, capacity_settings_from_toml, load_grid, parse_list, read_toml
from .intervals import t_interval
from .report import report as render_report
from .run import run_sweep

Config = Annotated[Path | None, typer.Argument(
    help="Sweep config (TOML; see examples/sweep.toml). Options below override its values.")]
Jobs = Annotated[int | None, typer.Option(
    help="Local worker processes (default: one per CPU); with --ray: CPUs of a 'local' "
         "Ray instance.", min=1)]
RayOpt = Annotated[str | None, typer.Option(
    "--ray", help="Run on Ray: 'auto' (the cluster this machine belongs to), an address "
                  "(ray://host:10001 or host:6379), or 'local' (start one here).")]
Policies = Annotated[str | None, typer.Option(
    help="Comma-separated policies (fcfs, sjf, srpt, mlfq; NAME+sp).")]
Loads = Annotated[str | None, typer.Option(
    help="Loads as fractions of measured capacity: '0.5,0.9' or START:STOP:STEP.")]
Rates = Annotated[str | None, typer.Option(help="Request rates (req/s) instead of --loads.")]
Seeds = Annotated[str | None, typer.Option(help="Comma-separated seeds.")]
Requests = Annotated[int | None, typer.Option(help="Use only the first N requests.", min=1)]
TraceOpt = Annotated[Path | None, typer.Option(
    "--trace", help="Trace file (default: the bundled Azure conversation sample).")]


@user_errors
def sweep(
    config: Config = None,
    out: Annotated[Path | None, typer.Option(
        help="Results folder (default llmsim-out/sweep-<config name>); rerun with the same "
             "folder to resume.")] = None,
    jobs: Jobs = None, ray: RayOpt = None,
    force: Annotated[bool, typer.Option(
        help="Discard a results folder that holds another sweep.")] = False,
    policies: Policies = None, loads: Loads = None, rates: Rates = None, seeds: Seeds = None,
    requests: Requests = None, trace: TraceOpt = None,
    report: Annotated[bool, typer.Option(help="Render the report when the sweep is done.")]
    = False,
) -> None:
    """Run a grid of policies x loads x engine configs x seeds; resumable."""
    grid = _grid(config, policies, loads, rates, seeds, requests, trace)
    out = out or Path("llmsim-out") / f"sweep-{config.stem if config else 'default'}"
    store.check(out, force)
    points = len(grid.points())
    where = (f"on Ray ({ray})" if ray else
             f"with {jobs} local job(s)" if jobs else "with one local job per CPU")
    err.print(f"{points} points into {out} {where}", highlight=False)
    try:
        outcome = run_sweep(grid, out, jobs=jobs, ray=ray, force=force)
    except KeyboardInterrupt:
        done = len(store.finished(out)) if (out / store.POINTS).is_dir() else 0
        err.print(f"[yellow]interrupted:[/] {done} of {points} points are saved in {out}; "
                  "run the same command again to finish the rest", highlight=False)
        raise typer.Exit(130) from None
    _print_sweep(outcome.table, grid)
    console.print(f"{outcome.computed} points simulated, {outcome.skipped} already done; "
                  f"results in [bold]{out / store.RESULTS}[/]")
    if report:
        files = render_report(out)
        console.print(f"report in [bold]{files.html}[/]")


@user_errors
def report(
    results: Annotated[Path, typer.Argument(help="A sweep's results folder.")],
    out: Annotated[Path | None, typer.Option(help="Report folder (default RESULTS/report).")]
    = None,
    cdf_at: Annotated[float | None, typer.Option(
        help="Load (or rate) of the CDF figures (default: the grid's nearest to 0.9).")] = None,
) -> None:
    """Figures (PNG) and one self-contained HTML page from a sweep's results."""
    files = render_report(results, out, cdf_at)
    if not files.complete:
        err.print("[yellow]the sweep is not finished: the report shows the points done so far[/]")
    console.print(f"report in [bold]{files.html}[/] ({len(files.figures)} figures beside it)")


@user_errors
def capacity(
    config: Config = None,
    ttft_p90_ms: Annotated[float | None, typer.Option(help="P90 TTFT bound (ms).")] = None,
    tpot_p90_ms: Annotated[float | None, typer.Option(help="P90 TPOT bound (ms).")] = None,
    tolerance: Annotated[float | None, typer.Option(
        help="Stop when the bracket is narrower than this fraction of its low end "
             "(default 0.02).")] = None,
    low: Annotated[float | None, typer.Option(help="Bracket low end (req/s).")] = None,
    high: Annotated[float | None, typer.Option(help="Bracket high end (req/s).")] = None,
    engine: Annotated[str | None, typer.Option(
        help="Engine config of the sweep config to use (default its first).")] = None,
    policies: Policies = None, seeds: Seeds = None, requests: Requests = None,
    trace: TraceOpt = None, jobs: Jobs = None, ray: RayOpt = None,
    out: Annotated[Path | None, typer.Option(
        help="Also write the answers to this file (.csv or .parquet).")] = None,
    force: Annotated[bool, typer.Option(help="Replace the --out file if it exists.")] = False,
) -> None:
    """Per policy, the highest request rate whose P90 TTFT and P90 TPOT meet an SLO."""
    settings = capacity_settings_from_toml(read_toml(config)) if config else None
    grid = _grid(config, policies, None, None, seeds, requests, trace)
    if settings is not None:
        ttft_p90_ms = ttft_p90_ms if ttft_p90_ms is not None else settings.ttft_p90_ms
        tpot_p90_ms = tpot_p90_ms if tpot_p90_ms is not None else settings.tpot_p90_ms
        tolerance = tolerance if tolerance is not None else settings.tolerance
        if settings.bracket is not None:
            low = low if low is not None else settings.bracket[0]
            high = high if high is not None else settings.bracket[1]
        if seeds is None and settings.seeds is not None:
            grid = replace(grid, seeds=settings.seeds)
    if (low is None) != (high is None):
        raise ValueError("give both --low and --high, or neither")
    if out is not None and out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out must end in .csv or .parquet, got {out}")
    if out is not None:
        check_file(out, force)
    names = [e.name for e in grid.engines]
    if engine is not None and engine not in names:
        raise ValueError(f"unknown engine config {engine!r}; the config has {names}")
    deployment = grid.deployment_for(engine or names[0])
    target = SloTarget(None if ttft_p90_ms is None else ttft_p90_ms / 1e3,
                       None if tpot_p90_ms is None else tpot_p90_ms / 1e3)
    deployment.cost_model()  # an unknown model or GPU fails before any simulation
    with progress("<10") as bar:
        tasks: dict[str, int] = {}

        def show(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        answers = capacity_search(
            grid.workload(), grid.policies, deployment, target, grid.seeds,
            None if low is None else (low, high), tolerance if tolerance is not None else 0.02,
            grid.burstiness, grid.simulator, jobs, ray, progress=show)
    if out is not None:
        _write_answers(answers, out)
    _print_capacity(answers, target, grid.seeds)
    if out is not None:
        console.print(f"answers in [bold]{out}[/]")


def _grid(config, policies, loads, rates, seeds, requests, trace) -> Grid:
    grid = load_grid(config) if config is not None else Grid()
    changes: dict = {}
    if policies is not None:
        changes["policies"] = parse_list(policies, str, "policies")
    if loads is not None and rates is not None:
        raise ValueError("give --loads or --rates, not both")
    if loads is not None:
        changes.update(loads=parse_list(loads, float, "loads"), rates=None)
    if rates is not None:
        changes.update(rates=parse_list(rates, float, "rates"), loads=None)
    if seeds is not None:
        changes["seeds"] = parse_list(seeds, int, "seeds")
    if requests is not None:
        changes["requests"] = requests
    if trace is not None:
        changes["trace"] = str(trace)
    return replace(grid, **changes) if changes else grid


def _print_sweep(results: pa.Table, grid: Grid) -> None:
    """Mean E2E over seeds, policy by load."""
    rows = results.to_pylist()
    x_key = "load" if grid.axis == "load" else "rate_rps"
    for engine in grid.engines:
        t = table(f"Mean E2E latency, mean over {len(grid.seeds)} seed(s), engine "
                  f"'{engine.name}'", "`llmsim report` draws every figure")
        t.add_column("policy", style="bold", overflow="fold", min_width=6)
        xs = grid.loads if grid.axis == "load" else grid.rates
        for x in xs:
            t.add_column(f"{x:g}" if grid.axis == "load" else f"{x:g}/s", justify="right",
                         no_wrap=True)
        for policy in grid.policies:
            cells = []
            for x in xs:
                sel = [r for r in rows if r["policy"] == policy and r["engine"] == engine.name
                       and r[x_key] == x]
                cells.append(duration(t_interval([_num(r["e2e_mean"]) for r in sel]).mean))
            t.add_row(policy, *cells)
        console.print(t)


def _print_capacity(answers: list[CapacityAnswer], target: SloTarget, seeds) -> None:
    bounds = " and ".join(f"P90 {name} <= {v * 1e3:g} ms" for name, v in
                          (("TTFT", target.ttft_p90), ("TPOT", target.tpot_p90)) if v is not None)
    t = table(f"Highest rate with {bounds} (mean over seeds {', '.join(map(str, seeds))})")
    for head in ("policy", "rate\n(req/s)", "load", "fails at\n(req/s)", "P90\nTTFT",
                 "P90\nTPOT", "rates\ntried", "status"):
        left = head in ("policy", "status")
        t.add_column(head, justify="left" if left else "right", no_wrap=not left,
                     overflow="fold", style="bold" if head == "policy" else None)
    best = max(a.rate_rps for a in answers)
    for a in answers:
        rate = f"{a.rate_rps:.3g}"
        t.add_row(a.policy, f"[green]{rate}[/]" if a.rate_rps == best and best > 0 else rate,
                  "-" if a.load is None else f"{a.load:.2f}",
                  "-" if math.isinf(a.fails_at_rps) else f"{a.fails_at_rps:.3g}",
                  duration(a.ttft_p90_s), duration(a.tpot_p90_s), str(a.evaluations), a.status)
    console.print(t)


def _write_answers(answers: list[CapacityAnswer], out: Path) -> None:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([a._asdict() for a in answers])
    write = pcsv.write_csv if out.suffix == ".csv" else pq.write_table
    write_atomic(out, lambda tmp: write(table, tmp))


def _num(v) -> float:
    return math.nan if v is None else float(v)
