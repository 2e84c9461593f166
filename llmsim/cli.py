"""`llmsim`: the command line. Parses, validates, reports; the work lives in the package."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .calibration import fit_cli
from .cli_kit import (
    OneLineErrors,
    console,
    default_out,
    duration,
    err,
    num,
    progress,
    table,
    user_errors,
)
from .engine.config import EngineConfig
from .engine.summary import Slo
from .integrations import cli as integrations_cli
from .output import check_file, check_folder, write_results
from .policies import POLICIES, get_policy
from .predictors import default_cache_dir, is_predictor_name, load_predictor_policy
from .predictors.cli import evaluate_ranker, train
from .simulate import SIMULATORS, Deployment, simulate
from .sweep import cli as sweep_cli
from .traces.cli import trace_app
from .traces.workload import Workload
from .workload_spec import WorkloadSpec

KNOWN_POLICIES = {*POLICIES, *(f"{p}+sp" for p in POLICIES)}

app = typer.Typer(
    help="llmsim: which scheduler should my LLM serving engine run, on my model, GPU and traffic?",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    cls=OneLineErrors,
)
app.add_typer(trace_app, name="trace", help="Inspect, plot and convert trace files.")

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
RouterOpt = Annotated[str, typer.Option(
    "--router", help="round-robin, least-tokens or cache-affinity (longest cached prefix, "
                     "load-guarded; needs prefix caching, on by default).")]
MaxSeqs = Annotated[int, typer.Option(help="vLLM max_num_seqs.", min=1)]
MaxTokens = Annotated[int, typer.Option(help="vLLM max_num_batched_tokens.", min=1)]
BlockSize = Annotated[int, typer.Option(help="KV cache block size in tokens.", min=1)]
GpuUtil = Annotated[float, typer.Option(help="vLLM gpu_memory_utilization.")]
Blocks = Annotated[int | None, typer.Option(
    help="KV blocks per replica (default: derived from GPU memory and the model).", min=1)]
PrefixCaching = Annotated[bool, typer.Option(
    help="vLLM's automatic prefix caching: requests reuse cached KV blocks of shared prefixes "
         "(a trace's hash_ids, `llmsim trace sessions`) and their own after a preemption.")]
SloTtft = Annotated[float | None, typer.Option(help="TTFT objective in ms, for goodput.")]
SloTpot = Annotated[float | None, typer.Option(help="TPOT objective in ms, for goodput.")]
SloE2e = Annotated[float | None, typer.Option(help="E2E objective in ms, for goodput.")]
Out = Annotated[Path | None, typer.Option(help="Output folder (default llmsim-out/<cmd>-<time>).")]
Force = Annotated[bool, typer.Option(help="Replace the output folder if it exists.")]
ProfileOpt = Annotated[str | None, typer.Option(
    "--profile", help="Cost profile: fitted (llmsim fit) or measured (llmsim calibrate), a path "
                      "or a bundled name, or 'roofline' (default: the GPU's fitted profile, "
                      "else a measured one for --gpu/--model/--tp, else the roofline).")]
SimulatorOpt = Annotated[str, typer.Option(
    help="'fast' (default) or 'reference' (one SimPy step per iteration; same results, much "
         "slower: for checking).")]


Policies = Annotated[str, typer.Option(
    "--policies", "--policy",
    help="Scheduling policy: fcfs, sjf, srpt, mlfq, or a predictor folder from `llmsim train`; "
         "NAME+sp adds starvation prevention. `compare` takes several, comma-separated.")]


def _simulation_command(name: str, default: str, doc: str):
    """`run` and `compare`: the same command, for one policy or several."""

    def command(
        policies: Policies = default,
        trace: Trace = None, trace_model: TraceModel = None, split: Split = None,
        draw: Draw = None, requests: Requests = None, load: Load = None, rate: Rate = None,
        arrival_process: Arrivals = "trace", burstiness: Burstiness = 1.0, seed: Seed = 0,
        model: Model = "llama-3-8b", gpu: Gpu = "h100", tp: Tp = 1, replicas: Replicas = 1,
        router: RouterOpt = "round-robin", max_num_seqs: MaxSeqs = 256,
        max_num_batched_tokens: MaxTokens = 8192, block_size: BlockSize = 16,
        gpu_memory_utilization: GpuUtil = 0.9, num_gpu_blocks: Blocks = None,
        slo_ttft_ms: SloTtft = None, slo_tpot_ms: SloTpot = None, slo_e2e_ms: SloE2e = None,
        out: Out = None, force: Force = False, simulator: SimulatorOpt = "fast",
        profile: ProfileOpt = None, scoring_delay_ms: ScoringDelay = 0.0,
        engine_overhead_ms: EngineOverhead = 0.0,
        enable_prefix_caching: PrefixCaching = True,
    ) -> None:
        names = [p.strip() for p in policies.split(",") if p.strip()]
        if name == "run" and len(names) > 1:
            raise ValueError("run simulates one policy; use `llmsim compare` for several")
        if trace is None and load is None and rate is None:
            load = 0.9  # the bundled sample's recorded rate means nothing for this deployment
        spec = WorkloadSpec(None if trace is None else str(trace), trace_model, split, draw,
                            requests, arrival_process, rate, load, burstiness, seed)
        engine = EngineConfig(max_num_seqs, max_num_batched_tokens, block_size,
                              gpu_memory_utilization, num_gpu_blocks,
                              enable_prefix_caching=enable_prefix_caching)
        deployment = Deployment(model, gpu, tp, replicas, router, engine, profile,
                                engine_overhead_ms / 1e3)
        slo = Slo(*(None if v is None else v / 1e3 for v in (slo_ttft_ms, slo_tpot_ms,
                                                             slo_e2e_ms)))
        simulate_policies(names, spec, deployment, slo, simulator, scoring_delay_ms / 1e3,
                          out or default_out(name), force)

    command.__doc__ = doc
    command.__name__ = name
    return user_errors(command)


run = app.command("run")(_simulation_command(
    "run", "fcfs", "Simulate one policy on a workload and write its results."))
compare = app.command("compare")(_simulation_command(
    "compare", "fcfs,sjf",
    "Simulate several policies on the same workload and deployment, side by side."))


@app.command()
@user_errors
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
    cuda_graphs: Annotated[bool, typer.Option(
        help="Time CUDA graph replays (as vLLM runs), not eager launches.")] = True,
    fidelity_points: Annotated[int, typer.Option(min=1)] = 24,
    seed: Seed = 0,
    out: Annotated[Path | None, typer.Option(
        help="Profile file (default llmsim-out/profiles/<gpu>-<model>-tp<tp>.json).")] = None,
    force: Force = False,
) -> None:
    """Time a model's kernels on this machine's GPU and write a cost profile."""
    from dataclasses import replace

    try:
        from .calibration.calibrate import KernelGrid, calibrate, plot_fidelity
    except ImportError as e:  # torch is an extra: pip install 'llmsim[calibrate]'
        raise ValueError(f"calibration needs torch ({e}); pip install 'llmsim[calibrate]'") \
            from None
    from .calibration.shapes import DTYPE_BYTES, get_model

    if dtype not in DTYPE_BYTES:
        raise ValueError(f"--dtype must be one of bf16, fp16, fp32, got {dtype!r}")
    shape = replace(get_model(model), dtype_bytes=DTYPE_BYTES[dtype])
    out = out or Path("llmsim-out") / "profiles" / f"{gpu}-{shape.name}-tp{tp}.json"
    check_file(out, force)
    grid = KernelGrid.quick() if quick else KernelGrid.full(max_num_batched_tokens, max_num_seqs)
    total = grid.size() + 1 + fidelity_points
    with progress("<48") as bar:
        task = bar.add_task("calibrating", total=total)

        def step(what: str) -> None:
            bar.update(task, advance=1, description=what)

        profile = calibrate(shape, tp, device, grid, warmup, repeats, flush_l2, fidelity_points,
                            seed, step, command=" ".join(["llmsim", *sys.argv[1:]]),
                            cuda_graphs=cuda_graphs)
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


def simulate_policies(names: list[str], spec: WorkloadSpec, deployment: Deployment, slo: Slo,
                      simulator: str, scoring_delay: float, out: Path, force: bool) -> None:
    """Simulate each named policy on the workload `spec` builds, write one results folder
    and print the table. Everything a user can get wrong fails before any simulation."""
    if not names:
        raise ValueError("no policy given")
    if len(set(names)) != len(names):
        raise ValueError(f"policy named twice in {','.join(names)}")
    # Predictor folders become policies once the workload is known (they score its prompts).
    for name in names:
        base = Path(name[:-3] if name.lower().endswith("+sp") else name)
        if is_predictor_name(name) or name.lower() in KNOWN_POLICIES:
            continue
        if base.is_dir():
            raise ValueError(f"{base}: a folder, but not a predictor from `llmsim train` "
                             "(no card.json in it)")
        if "/" in name or base.exists():
            raise FileNotFoundError(f"{name}: not a predictor folder (no such folder)")
    policies = [None if is_predictor_name(name) else get_policy(name) for name in names]
    if simulator not in SIMULATORS:
        raise ValueError(f"--simulator must be one of {', '.join(SIMULATORS)}, "
                         f"got {simulator!r}")
    cost = deployment.cost_model()  # unknown model or GPU fails here
    memory = deployment.memory() if deployment.engine.num_gpu_blocks is None else None
    check_folder(out, force)
    results = []
    with progress() as bar:
        probe = bar.add_task("capacity", total=None)
        workload, capacity = spec.build(
            deployment, cost, lambda done, total: bar.update(probe, completed=done, total=total))
        bar.remove_task(probe)
        for i, name in enumerate(names):
            if policies[i] is None:
                task = bar.add_task(f"scoring {Path(name).name}"[:24], total=None)
                policies[i] = load_predictor_policy(
                    name, workload, default_cache_dir(), scoring_delay=scoring_delay,
                    progress=lambda k, task=task: bar.update(task, advance=k))
                bar.remove_task(task)
        for p in policies:
            task = bar.add_task(p.name, total=len(workload))
            results.append(simulate(
                workload, p, deployment, slo, cost, simulator=simulator,
                progress=lambda done, task=task: bar.update(task, completed=done)))
    config = {
        "llmsim_version": __version__,
        "command": " ".join(["llmsim", *sys.argv[1:]]),
        "simulator": simulator,
        # the engine's modules, the fast simulator's loop and the caching pool's per-block
        # steps, compiled or Python: the same results, another speed
        **{k: results[0].config[k] for k in ("engine_modules", "decode_run_loop",
                                              "prefix_pool_steps")
           if results and k in results[0].config},
        "deployment": deployment.to_dict(),
        "cost_model": cost.label,
        "cost_model_parameters": cost.describe(),
        "memory": memory,
        "workload": {**spec.to_dict(), "source": workload.source, "requests": len(workload),
                     "capacity_rps": capacity,
                     "mean_rate_rps": len(workload) / workload.duration if workload.duration
                     else None},
        "slo": slo.to_dict(),
        "policies": {r.policy: r.config["policy"] for r in results},
    }
    write_results(out, results, config, force)
    _print_table(results, workload, capacity, cost.label, slo)
    console.print(f"results in [bold]{out}[/]")


def _print_table(results, workload: Workload, capacity, cost_label: str, slo: Slo) -> None:
    if workload.duration > 0:
        rate = len(workload) / workload.duration
        title = f"{len(workload)} requests at {rate:.2f} req/s"
        if capacity:
            title += f" ({rate / capacity:.0%} of capacity {capacity:.2f} req/s)"
    else:
        title = f"{len(workload)} requests, all arriving at once"
    t = table(title)
    t.add_column("policy", style="bold", overflow="fold", min_width=6)
    for head in ("done", "req/s", "TTFT\nmean", "TTFT\np90", "TPOT\nmean", "E2E\nmean",
                 "E2E\np90", "queue\nmean", "pre-\nempt"):
        t.add_column(head, justify="right", no_wrap=True)
    goodput = any(v is not None for v in slo.to_dict().values())
    if goodput:
        t.add_column("goodput\n(req/s)", justify="right", no_wrap=True)
    cached = any(r.summary["cached_tokens"] for r in results)
    if cached:  # prompt tokens found cached
        t.add_column("prefix\nhits", justify="right", no_wrap=True)
    best = min(r.summary["e2e"]["mean"] for r in results)
    for r in results:
        s = r.summary
        e2e = duration(s["e2e"]["mean"])
        if len(results) > 1 and s["e2e"]["mean"] == best:
            e2e = f"[green]{e2e}[/]"
        row = [r.policy, f"{s['completed']}", num(s["throughput_rps"]),
               duration(s["ttft"]["mean"]), duration(s["ttft"]["p90"]),
               duration(s["tpot"]["mean"]), e2e, duration(s["e2e"]["p90"]),
               duration(s["queueing_delay"]["mean"]), f"{s['preemptions']}"]
        if goodput:
            row.append(f"{num(s['goodput_rps'])} ({s['slo_attainment']:.0%})")
        if cached:
            row.append(f"{s['prefix_hit_rate']:.0%}")
        t.add_row(*row)
    console.print(t)
    console.print(f"costs: {cost_label}", style="dim", highlight=False)
    rejected = max(r.summary["rejected"] for r in results)
    if rejected:
        err.print(f"[yellow]{rejected} requests could never fit in the KV pool and were "
                  "rejected[/]")


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
