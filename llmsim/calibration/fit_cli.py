"""`llmsim fit`: fit a GPU's cost parameters to real vLLM measurements (ML.ENERGY)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from ..cli_kit import console, err, progress, table, user_errors
from ..files import check_file

DEFAULT_DATA = Path("../shared/data/mlenergy")


def default_cache() -> Path:
    """Where simulated iteration traces are kept between fits ($XDG_CACHE_HOME/llmsim/fit)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmsim" / "fit"


@user_errors
def fit(
    data: Annotated[Path, typer.Option(
        help="Folder of ML.ENERGY leaderboard files (*__lm-arena-chat.json).")] = DEFAULT_DATA,
    gpu: Annotated[str, typer.Option(help="Which GPU's runs to fit: h100 or b200.")] = "h100",
    models: Annotated[str | None, typer.Option(
        help="Comma-separated presets to fit on (default: every dense model in --data).")]
    = None,
    moe: Annotated[bool, typer.Option(help="Fit on the MoE model's runs too.")] = False,
    held_out: Annotated[bool, typer.Option(
        help="Also leave each model out in turn, fit on the rest and report its errors "
             "(one extra fit per model).")] = False,
    prompt_medians: Annotated[str, typer.Option(
        help="Grid of prompt-length medians (tokens) for the unpublished prompt lengths.")]
    = "200,300,450",
    prompt_sigmas: Annotated[str, typer.Option(
        help="Grid of log-normal sigmas for the prompt lengths.")] = "0.7,1.0",
    gpu_memory_utilization: Annotated[float, typer.Option(
        help="The runs' vLLM gpu_memory_utilization (ML.ENERGY's configs keep vLLM's 0.9).")]
    = 0.9,
    cache: Annotated[Path | None, typer.Option(
        help="Folder for cached simulated runs (default $XDG_CACHE_HOME/llmsim/fit).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Profile file (default llmsim-out/fitted/<gpu>.json); a PNG of real vs "
             "simulated is written beside it.")] = None,
    force: Annotated[bool, typer.Option(help="Replace the profile if it exists.")] = False,
) -> None:
    """Fit a GPU's cost parameters to real vLLM runs, simulated the way they were measured."""
    _fit(data, gpu, models, moe, held_out, prompt_medians, prompt_sigmas,
         gpu_memory_utilization, cache, out, force)


def _grid(medians: str, sigmas: str):
    from .measured import PromptLengths

    try:
        ms = [float(x) for x in medians.split(",") if x.strip()]
        ss = [float(x) for x in sigmas.split(",") if x.strip()]
    except ValueError:
        raise ValueError("--prompt-medians and --prompt-sigmas take comma-separated numbers") \
            from None
    if not ms or not ss or min(ms) < 1 or min(ss) < 0:
        raise ValueError("prompt medians must be >= 1 and sigmas >= 0")
    return [PromptLengths(m, s) for m in ms for s in ss]


def _fit(data, gpu, models, moe, held_out, prompt_medians, prompt_sigmas, util, cache, out,
         force) -> None:
    from . import fit as F
    from .gpus import get_gpu
    from .mlenergy import SOURCE, load_mlenergy

    spec = get_gpu(gpu)
    grid = _grid(prompt_medians, prompt_sigmas)
    if not 0 < util <= 1:
        raise ValueError(f"--gpu-memory-utilization must be in (0, 1], got {util}")
    out = out or Path("llmsim-out") / "fitted" / f"{spec.name}.json"
    check_file(out, force)
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: no such folder (the ML.ENERGY data, e.g. "
                                "../shared/data/mlenergy)")
    points, skipped = load_mlenergy(data, (spec.name.upper(),), util)
    points = [p for p in points if moe or not p.model.is_moe]
    if models:
        want = {m.strip().lower() for m in models.split(",") if m.strip()}
        unknown = want - {p.meta["preset"] for p in points}
        if unknown:
            raise ValueError(f"no {spec.name} runs for {sorted(unknown)} in {data}")
        points = [p for p in points if p.meta["preset"] in want]
    if not points:
        raise ValueError(f"no {spec.name} runs to fit in {data}")
    for s in skipped:
        err.print(f"[yellow]skipped[/] {s.file} {s.what}: {s.why}")
    cache = cache or default_cache()
    groups = list(dict.fromkeys(p.group for p in points))
    t0 = time.perf_counter()
    with progress("") as bar:
        task = bar.add_task("fitting", total=None)

        def report(msg: str) -> None:
            bar.update(task, description=msg)

        fitted = F.fit(points, spec, grid, cache=cache, progress=report)
        report("pricing every run with the fitted parameters")
        preds = F.predict_points(points, fitted, cache)
        loo = F.leave_one_out(points, spec, grid, cache=cache, progress=report) \
            if held_out and len(groups) > 1 else []
    command = " ".join(["llmsim", "fit", *sys.argv[2:]]) if sys.argv[1:2] == ["fit"] else ""
    profile = F.fitted_profile(fitted, spec, SOURCE, points, preds, loo, command)
    profile.fit["cpu_seconds"] = round(time.process_time(), 1)
    profile.fit["wall_seconds"] = round(time.perf_counter() - t0, 1)
    profile.save(out)
    plot = out.with_suffix(".png")
    try:
        from .fit_plot import plot_fit

        plot_fit(points, preds, f"{profile.label}: real vs simulated, fitted runs", plot)
    except ImportError:
        plot = None
    _table(profile, groups)
    console.print(f"profile in [bold]{out}[/]" + (f", plot in {plot}" if plot else ""))


def _table(profile, groups) -> None:
    fit = profile.fit
    t = table(f"{profile.gpu}: median ITL and steady-state throughput, MAPE over "
              "max_num_seqs")
    t.add_column("model", style="bold")
    for head in ("runs", "ITL\n(fit)", "tok/s\n(fit)"):
        t.add_column(head, justify="right", no_wrap=True)
    if "held_out" in fit:
        t.add_column("ITL\n(held out)", justify="right", no_wrap=True)
        t.add_column("tok/s\n(held out)", justify="right", no_wrap=True)
    for g in groups:
        e = fit["in_fit"][g]
        row = [g, str(sum(1 for p in fit["points"] if p["group"] == g)),
               f"{100 * e['itl_mape']:.1f}%", f"{100 * e['tps_mape']:.1f}%"]
        if "held_out" in fit:
            h = fit["held_out"].get(g)
            row += [f"{100 * h['itl_mape']:.1f}%", f"{100 * h['tps_mape']:.1f}%"] if h \
                else ["-", "-"]
        t.add_row(*row)
    prompts = ", ".join(f"{f}: median {p['median']:g}, sigma {p['sigma']:g}"
                        for f, p in fit["prompt_lengths"].items())
    t.caption = f"prompt lengths (fitted nuisance) {prompts}"
    console.print(t)
