"""How fast and how lean is the simulator at scale? Two workloads, one replica each:

- `azure`: prompt/output lengths drawn at random, with replacement, from the Azure LLM
  conversation trace (2023), Poisson arrivals at 0.9 of the deployment's measured
  capacity; Llama-3-8B on one H100. Short outputs at high load: few iterations per request.
- `arxiv`: Vidur's arxiv-summarization lengths (long prompts, long-tailed outputs), Poisson
  at 2 req/s; Llama-3-8B on one A100, max_num_seqs 128: the workload Vidur was timed on
  (docs/speed.md). Many decode iterations pass between two events.
- `saturated` (not run by default): `azure`'s lengths at 1.3 x the capacity of 64 seats:
  a queue that grows behind full seats, as in a scheduling study past saturation.

Both are priced by the datasheet roofline unless `--profile default` asks for the
deployment's default (the fitted H100 profile for `azure`): a speed figure compares
simulators doing the same work, and a checkout from before the fitted profiles has only
the roofline.

FCFS and oracle SJF; each run is a fresh process, so its peak RSS is its own. The
reference simulator (one SimPy step per iteration) runs at 10k requests for the ratio.
`--baseline DIR` also runs every point with the llmsim of another checkout (e.g. `git
worktree add ../base <commit>`), interleaved with this one, and prints the ratio: on a
noisy machine only a same-session ratio says whether a change made the simulator slower.

    python benchmarks/engine_scale.py                       # both, 10k/100k/1M, 3 repeats
    python benchmarks/engine_scale.py --workloads arxiv --sizes 100000
    python benchmarks/engine_scale.py --sizes 10000000 --repeats 1 --reference-size 0 \
        --policies fcfs
    python benchmarks/engine_scale.py --sizes 100000 --baseline ../base

Figures are CPU seconds of the simulation alone (median over fresh processes): on a shared,
noisy machine they vary far less than wall time, which is printed beside them. Each row
says whether the engine's modules ran compiled (mypyc, setup.py) or from their sources;
`--vs-pure` also runs every point from the sources (LLMSIM_PURE_PYTHON=1), for the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLMSIM_SHARED_DATA", REPO.parent / "shared" / "data"))
TRACES = {"azure": "azure_llm_2023/AzureLLMInferenceTrace_conv.csv",
          "arxiv": "vidur_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
          "saturated": "azure_llm_2023/AzureLLMInferenceTrace_conv.csv"}
AZURE_LOAD = 0.9
SATURATED_LOAD, SATURATED_SEATS = 1.3, 64
ARXIV_RATE = 2.0


def build(kind: str, n: int, data: Path, seed: int, profile: str):
    """(workload, deployment, how its arrival rate was set)."""
    import importlib

    from llmsim import Deployment, EngineConfig
    from llmsim.capacity import capacity_rps
    from llmsim.traces import arrivals
    from llmsim.traces.loaders import load_trace
    from llmsim.traces.workload import Workload

    real = load_trace(data / TRACES[kind])
    rng = np.random.default_rng(seed)
    # before fitted profiles, a Deployment with no profile was priced by the roofline
    knows_roofline = hasattr(importlib.import_module("llmsim.simulate"), "fitted_cost_model")
    costs = {"profile": "roofline"} if profile == "roofline" and knows_roofline else {}
    # The engine's own speed, caching off as recorded before prefix caching became the
    # default (benchmarks/prefix_caching.py measures what caching costs); a checkout from
    # before caching has no such field
    off = ({"enable_prefix_caching": False}
           if "enable_prefix_caching" in EngineConfig.__dataclass_fields__ else {})
    # Drawn in random order, so that every stretch of the run has the trace's mix. Drawn
    # in trace order (sorted draws, as before 2026-11-29), Azure's hour-to-hour mix (mean
    # output 129 to 268 tokens per tenth of the trace) made stretches of "0.9 x capacity"
    # overloaded: at 1M requests queueing delay climbed to ~380 s and drained again
    # (mean E2E 105 s), and more the longer the run; in random order it stays ~0.
    rows = rng.integers(0, len(real), n)
    lengths = Workload(np.zeros(n), real.prompt_tokens[rows], real.output_tokens[rows],
                       source=f"{n} lengths drawn at random from {real.source}")
    if kind == "azure":
        deployment = Deployment(engine=EngineConfig(**off), **costs)
        rate = AZURE_LOAD * capacity_rps(real, deployment)
        note = f"poisson at {AZURE_LOAD} x capacity = {rate:.2f} req/s"
    elif kind == "saturated":
        deployment = Deployment(engine=EngineConfig(max_num_seqs=SATURATED_SEATS, **off), **costs)
        rate = SATURATED_LOAD * capacity_rps(real, deployment)
        note = (f"poisson at {SATURATED_LOAD} x capacity = {rate:.2f} req/s, "
                f"{SATURATED_SEATS} seats")
    else:
        deployment = Deployment(model="llama-3-8b", gpu="a100",
                                engine=EngineConfig(max_num_seqs=128, **off), **costs)
        rate, note = ARXIV_RATE, f"poisson at {ARXIV_RATE} req/s"
    return lengths.with_arrivals(arrivals.poisson(n, rate, rng), note), deployment, note


def worker(kind: str, n: int, policy: str, simulator: str, data: Path, seed: int,
           profile: str) -> None:
    import inspect

    from llmsim import get_policy, simulate

    workload, deployment, note = build(kind, n, data, seed, profile)
    # a baseline checkout from before the fast/reference choice was called `simulator`
    choice = "simulator" if "simulator" in inspect.signature(simulate).parameters else "engine"
    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate(workload, get_policy(policy), deployment, **{choice: simulator})
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = res.summary
    print(json.dumps({
        "workload": kind, "requests": n, "policy": policy, "simulator": simulator,
        "wall_s": wall, "cpu_s": cpu, "iterations": s["iterations"], "arrivals": note,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mean_e2e_s": s["e2e"]["mean"], "completed": s["completed"],
        "costs": deployment.cost_model().describe()["kind"],
        "engine": res.config.get("engine_modules", "python"),  # before mypyc: Python
    }))


def run(kind, n, policy, simulator, data, seed, profile, code: Path | None = None,
        pure: bool = False) -> dict:
    """One fresh process; `code`: the checkout whose llmsim it imports (default: installed);
    `pure`: its engine from the sources, not compiled."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if code is not None:
        env["PYTHONPATH"] = str(code.resolve())
    if pure:
        env["LLMSIM_PURE_PYTHON"] = "1"
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(n), policy, simulator,
         "--data", str(data), "--seed", str(seed), "--profile", profile],
        check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workloads", nargs="+", choices=sorted(TRACES),
                    default=["azure", "arxiv"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--policies", nargs="+", choices=["fcfs", "sjf"], default=["fcfs", "sjf"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference-size", type=int, default=10_000)
    ap.add_argument("--data", type=Path, default=DATA, help="The shared data folder.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", choices=["roofline", "default"], default="roofline",
                    help="Costs: the datasheet roofline, or the deployment's default.")
    ap.add_argument("--baseline", type=Path,
                    help="Another llmsim checkout to run every point with as well, for ratios.")
    ap.add_argument("--vs-pure", action="store_true",
                    help="Also run every point with the engine's sources, for ratios.")
    ap.add_argument("--worker", nargs=4, metavar=("WORKLOAD", "N", "POLICY", "SIMULATOR"))
    args = ap.parse_args()
    if args.worker:
        kind, n, policy, simulator = args.worker
        return worker(kind, int(n), policy, simulator, args.data, args.seed, args.profile)

    rows = []
    plan = [(k, n, p, "fast") for k in args.workloads for n in args.sizes
            for p in args.policies]
    if args.reference_size:
        plan += [(k, args.reference_size, p, "reference") for k in args.workloads
                 for p in args.policies]
    for kind, n, policy, simulator in plan:
        runs, base = [], []
        for _ in range(args.repeats):  # interleaved, so that both see the same noise
            runs.append(run(kind, n, policy, simulator, args.data, args.seed, args.profile))
            if args.baseline or args.vs_pure:
                base.append(run(kind, n, policy, simulator, args.data, args.seed,
                                args.profile, args.baseline, args.vs_pure))
        cpu = statistics.median(r["cpu_s"] for r in runs)
        r0 = runs[0]
        rows.append({**r0, "cpu_s": cpu, "cpus": [round(r["cpu_s"], 2) for r in runs],
                     "wall_s": statistics.median(r["wall_s"] for r in runs),
                     "rss_mb": max(r["rss_mb"] for r in runs)})
        print(f"{kind:>5} {simulator:>9} {policy:>4} {n:>10,} req: {cpu:8.2f} CPU s (median "
              f"of {len(runs)}: {rows[-1]['cpus']}; wall {rows[-1]['wall_s']:.2f} s), "
              f"{n / cpu:9,.0f} req/s, {r0['iterations']:>11,} iterations, "
              f"peak RSS {rows[-1]['rss_mb']:6.0f} MB, mean E2E {r0['mean_e2e_s']:.2f} s "
              f"({r0['arrivals']}; {r0['costs']} costs; engine {r0.get('engine')})",
              flush=True)
        if base:
            b_cpu = statistics.median(r["cpu_s"] for r in base)
            same = all(r["mean_e2e_s"] == r0["mean_e2e_s"] for r in base)
            label = "baseline" if args.baseline else "sources"
            print(f"{kind:>5} {label:>9} {policy:>4} {n:>10,} req: {b_cpu:8.2f} CPU s "
                  f"(median of {len(base)}: {[round(r['cpu_s'], 2) for r in base]}); "
                  f"this / baseline = {cpu / b_cpu:.3f}; same mean E2E: {same}; engine "
                  f"{base[0].get('engine')}", flush=True)

    def cpu(kind, n, policy, simulator="fast"):
        return next((r["cpu_s"] for r in rows if (r["workload"], r["requests"], r["policy"],
                                                   r["simulator"]) == (kind, n, policy,
                                                                       simulator)), None)

    print()
    for kind in args.workloads:
        for policy in args.policies:
            ref = cpu(kind, args.reference_size, policy, "reference")
            fast = cpu(kind, args.reference_size, policy)
            if ref and fast:
                print(f"{kind} {policy}: the fast simulator is {ref / fast:.1f}x the reference "
                      f"at {args.reference_size:,} requests")
            a, b = cpu(kind, 100_000, policy), cpu(kind, 1_000_000, policy)
            if a and b:
                print(f"{kind} {policy}: 1M / 100k CPU time = {b / a:.1f}x (linear: 10x)")


if __name__ == "__main__":
    main()
