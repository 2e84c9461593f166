"""`llmsim`: the command line. Parses, validates, reports; the work lives in the package."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .calibration import fit_cli
from .calibration.gpus import UnknownGpuError
from .calibration.memory import InsufficientMemoryError
from .calibration.profile import ProfileError
from .calibration.shapes import UnknownModelError
from .capacity import capacity_rps
from .engine.config import EngineConfig
from .engine.summary import Slo
from .integrations import cli as integrations_cli
from .output import OutputExistsError, check_target, write_results
from .policies import UnknownPolicyError, get_policy
from .predictors import (
    ArtifactError,
    default_cache_dir,
    is_predictor_name,
    load_predictor_policy,
)
from .predictors.cli import evaluate_ranker, train
from .simulate import ENGINES, Deployment, simulate
from .sweep import cli as sweep_cli
from .traces import arrivals
from .traces.cli import trace_app
from .traces.default import default_workload
from .traces.loaders import load_trace
from .traces.workload import Workload, WorkloadError

app = typer.Typer(
    help="llmsim: which scheduler should my LLM serving engine run, on my model, GPU and traffic?",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
app.add_typer(trace_app, name="trace", help="Inspect, plot and convert trace files.")
console = Console()
err = Console(stderr=True)

USER_ERRORS = (ProfileError, WorkloadError, UnknownPolicyError, UnknownModelError, UnknownGpuError,
               InsufficientMemoryError, OutputExistsError, FileNotFoundError, ValueError,
               ArtifactError, ImportError)

Trace = Annotated[Path | None, typer.Option(
    help="Trace file (see `llmsim trace info`); default: the bundled Azure conversation sample.")]
Requests = Annotated[int | None, typer.Option(help="Use only the first N requests.", min=1)]
TraceModel = Annotated[str | None, typer.Option(
    help="CASTILLO trace: whose output lengths (e.g. Llama-3.1-8B-Instruct).")]
Split = Annotated[str | None, typer.Option(help="CASTILLO trace: train, validate or test.")]
Draw = Annotated[int | None, typer.Option(
    help="Draw N requests from the trace's prompts (uniformly, with replacement, each with "
         "one of its real output lengths) instead of replaying the trace once.", min=1)]
EngineOverhead = Annotated[float, typer.Option(
    help="The engine's own work per iteration beyond the model's kernels (ms), added to the "
         "cost model; measure it with `llmsim validate` on one request alone.", min=0)]
ScoringDelay = Annotated[float, typer.Option(
    help="Predictor policies: the ranker's latency per batch of arrivals, in ms.", min=0)]
Load = Annotated[float | None, typer.Option(
    help="Scale arrivals to this fraction of the deployment's measured capacity "
         "(default 0.9 for the bundled workload; a given trace keeps its recorded times).")]
Rate = Annotated[float | None, typer.Option(help="Scale arrivals to this mean rate (req/s).")]
Arrivals = Annotated[str, typer.Option(
    help="Arrival times: 'trace' (recorded, rescaled by --load/--rate), 'poisson' or 'gamma' "
         "(drawn at --rate or --load with --seed).")]
Burstiness = Annotated[float, typer.Option(
    help="Gamma shape for --arrival-process gamma (1 = Poisson; lower is burstier).")]
Seed = Annotated[int, typer.Option(help="Seed of every random draw in the run.")]
Model = Annotated[str, typer.Option(
    help="Model shape preset (llama-3-8b, llama-3.1-70b, qwen2.5-7b, qwen3-8b, mistral-7b, ...) "
         "or a Hugging Face config.json path.")]
Gpu = Annotated[str, typer.Option(help="GPU preset: h100, h200, a100.")]
Tp = Annotated[int, typer.Option(help="Tensor-parallel degree of each replica.", min=1)]
Replicas = Annotated[int, typer.Option(help="Engine replicas behind the router.", min=1)]
RouterOpt = Annotated[str, typer.Option("--router", help="round-robin or least-tokens.")]
MaxSeqs = Annotated[int, typer.Option(help="vLLM max_num_seqs.", min=1)]
MaxTokens = Annotated[int, typer.Option(help="vLLM max_num_batched_tokens.", min=1)]
BlockSize = Annotated[int, typer.Option(help="KV cache block size in tokens.", min=1)]
GpuUtil = Annotated[float, typer.Option(help="vLLM gpu_memory_utilization.")]
Blocks = Annotated[int | None, typer.Option(
    help="KV blocks per replica (default: derived from GPU memory and the model).", min=1)]
SloTtft = Annotated[float | None, typer.Option(help="TTFT objective in ms, for goodput.")]
SloTpot = Annotated[float | None, typer.Option(help="TPOT objective in ms, for goodput.")]
SloE2e = Annotated[float | None, typer.Option(help="E2E objective in ms, for goodput.")]
Out = Annotated[Path | None, typer.Option(help="Output folder (default llmsim-out/<cmd>-<time>).")]
Force = Annotated[bool, typer.Option(help="Replace the output folder if it exists.")]
ProfileOpt = Annotated[str | None, typer.Option(
    "--profile", help="Cost profile: fitted (llmsim fit) or measured (llmsim calibrate), a path "
                      "or a bundled name, or 'roofline' (default: the GPU's fitted profile, "
                      "else a measured one for --gpu/--model/--tp, else the roofline).")]
EngineOpt = Annotated[str, typer.Option(
    "--engine", help="'fast' (default) or 'reference' (one SimPy step per iteration; same "
                     "results, much slower: for checking).")]


@app.command()
def run(
    policy: Annotated[str, typer.Option(
        help="Scheduling policy: fcfs, sjf, srpt, mlfq, or a predictor folder from "
             "`llmsim train`; NAME+sp adds starvation prevention.")
    ] = "fcfs",
    trace: Trace = None, trace_model: TraceModel = None, split: Split = None, draw: Draw = None,
    requests: Requests = None, load: Load = None, rate: Rate = None,
    arrival_process: Arrivals = "trace", burstiness: Burstiness = 1.0, seed: Seed = 0,
    model: Model = "llama-3-8b", gpu: Gpu = "h100", tp: Tp = 1, replicas: Replicas = 1,
    router: RouterOpt = "round-robin", max_num_seqs: MaxSeqs = 256,
    max_num_batched_tokens: MaxTokens = 8192, block_size: BlockSize = 16,
    gpu_memory_utilization: GpuUtil = 0.9, num_gpu_blocks: Blocks = None,
    slo_ttft_ms: SloTtft = None, slo_tpot_ms: SloTpot = None, slo_e2e_ms: SloE2e = None,
    out: Out = None, force: Force = False, engine: EngineOpt = "fast",
    profile: ProfileOpt = None, scoring_delay_ms: ScoringDelay = 0.0,
    engine_overhead_ms: EngineOverhead = 0.0,
) -> None:
    """Simulate one policy on a workload and write its results."""
    _main("run", [policy], **{k: v for k, v in locals().items() if k != "policy"})


@app.command()
def compare(
    policies: Annotated[str, typer.Option(
        help="Comma-separated policies: names (fcfs, sjf, srpt, mlfq) or predictor folders "
             "from `llmsim train`; NAME+sp adds starvation prevention.")] = "fcfs,sjf",
    trace: Trace = None, trace_model: TraceModel = None, split: Split = None, draw: Draw = None,
    requests: Requests = None, load: Load = None, rate: Rate = None,
    arrival_process: Arrivals = "trace", burstiness: Burstiness = 1.0, seed: Seed = 0,
    model: Model = "llama-3-8b", gpu: Gpu = "h100", tp: Tp = 1, replicas: Replicas = 1,
    router: RouterOpt = "round-robin", max_num_seqs: MaxSeqs = 256,
    max_num_batched_tokens: MaxTokens = 8192, block_size: BlockSize = 16,
    gpu_memory_utilization: GpuUtil = 0.9, num_gpu_blocks: Blocks = None,
    slo_ttft_ms: SloTtft = None, slo_tpot_ms: SloTpot = None, slo_e2e_ms: SloE2e = None,
    out: Out = None, force: Force = False, engine: EngineOpt = "fast",
    profile: ProfileOpt = None, scoring_delay_ms: ScoringDelay = 0.0,
    engine_overhead_ms: EngineOverhead = 0.0,
) -> None:
    """Simulate several policies on the same workload and deployment, side by side."""
    names = [p.strip() for p in policies.split(",") if p.strip()]
    _main("compare", names, **{k: v for k, v in locals().items() if k not in ("policies", "names")})


@app.command()
def calibrate(
    model: Annotated[str, typer.Option(help="Model preset or config.json path.")] = "llama-3.1-8b",
    device: Annotated[str, typer.Option(help="cuda, cuda:N, or cpu (tiny models, tests).")]
    = "cuda",
    tp: Tp = 1,
    dtype: Annotated[str, typer.Option(help="bf16, fp16 or fp32.")] = "bf16",
    gpu: Annotated[str, typer.Option(help="GPU preset name for the profile's file name.")]
    = "h100",
    quick: Annotated[bool, typer.Option(help="A handful of grid points (tests, CPU).")] = False,
    max_num_batched_tokens: MaxTokens = 8192, max_num_seqs: MaxSeqs = 256,
    warmup: Annotated[int, typer.Option(min=0)] = 3,
    repeats: Annotated[int, typer.Option(min=1)] = 10,
    flush_l2: Annotated[bool, typer.Option(help="Flush the L2 cache before each repeat.")]
    = False,
    fidelity_points: Annotated[int, typer.Option(min=1)] = 24,
    seed: Seed = 0,
    out: Annotated[Path | None, typer.Option(
        help="Profile file (default llmsim-out/profiles/<gpu>-<model>-tp<tp>.json).")] = None,
    force: Force = False,
) -> None:
    """Time a model's kernels on this machine's GPU and write a cost profile."""
    try:
        _calibrate(model, device, tp, dtype, gpu, quick, max_num_batched_tokens, max_num_seqs,
                   warmup, repeats, flush_l2, fidelity_points, seed, out, force)
    except USER_ERRORS as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None


def _calibrate(model, device, tp, dtype, gpu, quick, max_num_batched_tokens, max_num_seqs,
               warmup, repeats, flush_l2, fidelity_points, seed, out, force) -> None:
    from dataclasses import replace

    try:
        from .calibration.calibrate import Grid, calibrate, plot_fidelity
    except ImportError as e:  # torch is an extra: pip install 'llmsim[calibrate]'
        raise ValueError(f"calibration needs torch ({e}); pip install 'llmsim[calibrate]'") \
            from None
    from .calibration.shapes import DTYPE_BYTES, get_model

    if dtype not in DTYPE_BYTES:
        raise ValueError(f"--dtype must be one of bf16, fp16, fp32, got {dtype!r}")
    shape = replace(get_model(model), dtype_bytes=DTYPE_BYTES[dtype])
    out = out or Path("llmsim-out") / "profiles" / f"{gpu}-{shape.name}-tp{tp}.json"
    check_target(out, force)
    grid = Grid.quick() if quick else Grid.full(max_num_batched_tokens, max_num_seqs)
    total = grid.size() + 1 + fidelity_points
    with Progress(TextColumn("{task.description:<48}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        task = progress.add_task("calibrating", total=total)

        def step(what: str) -> None:
            progress.update(task, advance=1, description=what)

        profile = calibrate(shape, tp, device, grid, warmup, repeats, flush_l2, fidelity_points,
                            seed, step, command=" ".join(["llmsim", *sys.argv[1:]]))
    profile.save(out)
    plot = out.with_suffix(".fidelity.png")
    try:
        plot_fidelity(profile, plot)
    except ImportError:
        plot = None
    f, m = profile.fidelity, profile.measurements
    points = sum(len(m[k]) for k in ("dense", "head", "prefill", "decode"))
    console.print(f"[bold]{shape.name}[/] on {profile.meta['gpu']} (tp={tp}, {dtype}): "
                  f"{points} kernel points; whole-forward fidelity over {len(f['points'])} "
                  f"shapes: MAPE {100 * f['mape']:.1f}%, worst {100 * f['worst']:.1f}%")
    console.print(f"profile in [bold]{out}[/]" + (f", fidelity plot in {plot}" if plot else ""))


@app.command()
def version() -> None:
    """Print llmsim's version."""
    console.print(__version__)


def _main(command: str, policy_names: list[str], **opts) -> None:
    try:
        _execute(command, policy_names, **opts)
    except USER_ERRORS as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None


def _execute(command, policy_names, *, trace, trace_model, split, draw, requests, load, rate,
             arrival_process, burstiness, seed, model, gpu, tp, replicas, router, max_num_seqs,
             max_num_batched_tokens, block_size, gpu_memory_utilization, num_gpu_blocks,
             slo_ttft_ms, slo_tpot_ms, slo_e2e_ms, out, force, engine, profile,
             scoring_delay_ms, engine_overhead_ms) -> None:
    # Validate everything before any simulation runs.
    if not policy_names:
        raise ValueError("no policy given")
    if len(set(policy_names)) != len(policy_names):
        raise ValueError(f"policy named twice in {','.join(policy_names)}")
    # Predictor folders become policies once the workload is known (they score its prompts).
    for name in policy_names:
        if "/" in name and not is_predictor_name(name):
            raise FileNotFoundError(f"{name}: not a predictor folder (no card.json)")
    policies = [None if is_predictor_name(name) else get_policy(name) for name in policy_names]
    if load is not None and rate is not None:
        raise ValueError("give --load or --rate, not both")
    if load is not None and not load > 0:
        raise ValueError(f"--load must be > 0, got {load}")
    if rate is not None and not rate > 0:
        raise ValueError(f"--rate must be > 0, got {rate}")
    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if arrival_process not in ("trace", "poisson", "gamma"):
        raise ValueError(f"--arrival-process must be trace, poisson or gamma, "
                         f"got {arrival_process!r}")
    slo = Slo(*(None if v is None else v / 1e3 for v in (slo_ttft_ms, slo_tpot_ms, slo_e2e_ms)))
    deployment = Deployment(model, gpu, tp, replicas, router, EngineConfig(
        max_num_seqs, max_num_batched_tokens, block_size, gpu_memory_utilization, num_gpu_blocks),
        profile, engine_overhead_ms / 1e3)
    cost = deployment.cost_model()  # unknown model or GPU fails here
    memory = deployment.memory() if num_gpu_blocks is None else None
    out = out or Path("llmsim-out") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_target(out, force)

    workload = _load_workload(trace, trace_model, split)
    if draw is not None:
        workload = _draw(workload, draw, seed)
    if requests is not None:
        workload = workload.head(requests)
    if not len(workload):
        raise WorkloadError("the workload has no requests")
    if trace is None and load is None and rate is None:
        load = 0.9
    workload, capacity = _place_arrivals(workload, deployment, cost, load, rate,
                                         arrival_process, burstiness, seed)

    results = []
    with _progress() as progress:
        for i, name in enumerate(policy_names):
            if policies[i] is None:
                task = progress.add_task(f"scoring {Path(name).name}"[:24], total=None)
                policies[i] = load_predictor_policy(
                    name, workload, default_cache_dir(), scoring_delay=scoring_delay_ms / 1e3,
                    progress=lambda k, task=task: progress.update(task, advance=k))
                progress.remove_task(task)
        for p in policies:
            task = progress.add_task(p.name, total=len(workload))

            def report(done, task=task):
                progress.update(task, completed=done)

            results.append(simulate(workload, p, deployment, slo, cost, progress=report,
                                    engine=engine))
    config = {
        "llmsim_version": __version__,
        "command": " ".join(["llmsim", *sys.argv[1:]]),
        "engine": engine,
        "deployment": deployment.to_dict(),
        "cost_model": cost.label,
        "cost_model_parameters": cost.describe(),
        "memory": memory,
        "workload": {"source": workload.source, "requests": len(workload),
                     "arrival_process": arrival_process, "load": load, "rate": rate,
                     "burstiness": burstiness, "seed": seed,
                     "capacity_rps": capacity,
                     "mean_rate_rps": len(workload) / workload.duration if workload.duration
                     else None},
        "slo": slo.to_dict(),
        "policies": {r.policy: r.config["policy"] for r in results},
    }
    write_results(out, results, config, force)
    _print_table(results, workload, capacity, cost.label, slo)
    console.print(f"results in [bold]{out}[/]")


def _load_workload(trace: Path | None, trace_model: str | None, split: str | None) -> Workload:
    options = {k: v for k, v in (("model", trace_model), ("split", split)) if v is not None}
    if trace is None:
        if options:
            raise ValueError("--trace-model and --split apply to a CASTILLO --trace")
        return default_workload()
    return load_trace(trace, **options)


def _draw(workload: Workload, n: int, seed: int) -> Workload:
    """n requests drawn from the workload's prompts; arrival times are placed later."""
    from dataclasses import replace

    from .traces import PromptPool, synthesize

    pool = workload.meta.get("pool") or PromptPool.from_workload(workload)
    drawn = synthesize(n, pool, np.zeros(n), np.random.default_rng(seed))
    return replace(drawn, source=f"{n} requests drawn from {pool.source} (seed {seed})",
                   meta={**drawn.meta, "has_arrivals": False})


def _place_arrivals(workload: Workload, deployment: Deployment, cost, load, rate, process,
                    burstiness, seed) -> tuple[Workload, float | None]:
    if process == "trace" and not workload.meta.get("has_arrivals", True):
        raise WorkloadError(f"{workload.source} has no arrival times: use "
                            "--arrival-process poisson or gamma with --rate or --load")
    capacity = None
    if load is not None:
        capacity = capacity_rps(workload, deployment, cost)
        rate = load * capacity
    if process == "trace":
        if rate is None:
            return workload, capacity
        return workload.with_arrivals(arrivals.scale_to_rate(workload.arrival, rate),
                                      f"arrivals rescaled to {rate:.3g} req/s"), capacity
    if rate is None:
        raise ValueError(f"--arrival-process {process} needs --rate or --load")
    rng = np.random.default_rng(seed)
    n = len(workload)
    if process == "poisson":
        times = arrivals.poisson(n, rate, rng)
    else:
        times = arrivals.gamma(n, rate, burstiness, rng)
    return workload.with_arrivals(times, f"{process} arrivals at {rate:.3g} req/s, seed {seed}"), \
        capacity


def _progress() -> Progress:
    return Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True)


def _print_table(results, workload: Workload, capacity, cost_label: str, slo: Slo) -> None:
    rate = len(workload) / workload.duration if workload.duration else float("nan")
    title = f"{len(workload)} requests at {rate:.2f} req/s"
    if capacity:
        title += f" ({rate / capacity:.0%} of capacity {capacity:.2f} req/s)"
    table = Table(title=title, caption=f"costs: {cost_label}", title_style="bold")
    table.add_column("policy", style="bold")
    for head in ("done", "req/s", "TTFT mean", "TTFT p90", "TPOT mean", "E2E mean", "E2E p90",
                 "queue mean", "preempt"):
        table.add_column(head, justify="right")
    goodput = any(v is not None for v in slo.to_dict().values())
    if goodput:
        table.add_column("goodput", justify="right")
    best = min(r.summary["e2e"]["mean"] for r in results)
    for r in results:
        s = r.summary
        e2e = f"{s['e2e']['mean']:.2f} s"
        if len(results) > 1 and s["e2e"]["mean"] == best:
            e2e = f"[green]{e2e}[/]"
        row = [r.policy, f"{s['completed']}", f"{s['throughput_rps']:.2f}",
               _ms(s["ttft"]["mean"]), _ms(s["ttft"]["p90"]), _ms(s["tpot"]["mean"]), e2e,
               f"{s['e2e']['p90']:.2f} s", _ms(s["queueing_delay"]["mean"]),
               f"{s['preemptions']}"]
        if goodput:
            row.append(f"{s['goodput_rps']:.2f}/s ({s['slo_attainment']:.0%})")
        table.add_row(*row)
    console.print(table)
    rejected = max(r.summary["rejected"] for r in results)
    if rejected:
        err.print(f"[yellow]{rejected} requests could never fit in the KV pool and were "
                  "rejected[/]")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds == seconds else "-"


# Commands whose work lives in their own packages, listed after the core ones.
app.command()(train)
app.command("evaluate-ranker")(evaluate_ranker)
app.command("sweep")(sweep_cli.sweep)
app.command("report")(sweep_cli.report)
app.command("capacity-search")(sweep_cli.capacity)
app.command("replay")(integrations_cli.replay)
app.command("validate")(integrations_cli.validate)
app.command("run-transformers")(integrations_cli.run_transformers)
app.command("fit")(fit_cli.fit)
