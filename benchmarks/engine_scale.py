"""How fast and how lean is the simulator at scale? (the "million requests" target)

Workload: prompt/output lengths drawn with replacement from the Azure LLM conversation
trace (2023), Poisson arrivals at 0.9 of the deployment's measured capacity; Llama-3-8B on
one H100 (roofline costs), one replica; FCFS and oracle SJF. Each run is a fresh process,
so its peak RSS is its own. The reference simulator (one SimPy step per iteration) runs at
10k requests for the ratio. `--baseline DIR` also runs every point with the llmsim of
another checkout (e.g. `git worktree add ../base <commit>`), interleaved with this one, and
prints the ratio: on a noisy machine, only a same-session ratio says whether a change
made the simulator slower.

    python benchmarks/engine_scale.py                 # 10k, 100k, 1M; 3 repeats each
    python benchmarks/engine_scale.py --sizes 10000000 --repeats 1
    python benchmarks/engine_scale.py --sizes 100000 1000000 --baseline ../base

Figures are CPU seconds of the simulation alone (median over fresh processes): on a shared,
noisy machine they vary far less than wall time, which is printed beside them.
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
DEFAULT_TRACE = (REPO.parent / "shared" / "data" / "azure_llm_2023"
                 / "AzureLLMInferenceTrace_conv.csv")
LOAD = 0.9


def build_workload(n: int, trace: Path, seed: int):
    from llmsim import Deployment
    from llmsim.capacity import capacity_rps
    from llmsim.traces import arrivals
    from llmsim.traces.loaders import load_trace

    real = load_trace(trace)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(real), n)
    lengths = real.select(np.sort(pick))  # rows keep their arrival order; times are redrawn
    capacity = capacity_rps(real, Deployment())
    times = arrivals.poisson(n, LOAD * capacity, rng)
    return lengths.with_arrivals(times, f"poisson at {LOAD} x {capacity:.2f} req/s"), capacity


def worker(n: int, policy: str, simulator: str, trace: Path, seed: int) -> None:
    import inspect

    from llmsim import Deployment, get_policy, simulate

    workload, capacity = build_workload(n, trace, seed)
    # a baseline checkout from before the fast/reference choice was called `simulator`
    choice = "simulator" if "simulator" in inspect.signature(simulate).parameters else "engine"
    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate(workload, get_policy(policy), Deployment(), **{choice: simulator})
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = res.summary
    print(json.dumps({
        "requests": n, "policy": policy, "simulator": simulator, "wall_s": wall, "cpu_s": cpu,
        "iterations": s["iterations"], "capacity_rps": capacity,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mean_e2e_s": s["e2e"]["mean"], "completed": s["completed"],
    }))


def run(n, policy, simulator, trace, seed, code: Path | None = None):
    """One fresh process; `code`: the checkout whose llmsim it imports (default: installed)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if code is not None:
        env["PYTHONPATH"] = str(code.resolve())
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(n), policy, simulator, "--trace", str(trace),
         "--seed", str(seed)],
        check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference-size", type=int, default=10_000)
    ap.add_argument("--trace", type=Path,
                    default=Path(os.environ.get("LLMSIM_AZURE_CONV", DEFAULT_TRACE)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline", type=Path,
                    help="Another llmsim checkout to run every point with as well, for ratios.")
    ap.add_argument("--worker", nargs=3, metavar=("N", "POLICY", "SIMULATOR"))
    args = ap.parse_args()
    if args.worker:
        n, policy, simulator = args.worker
        return worker(int(n), policy, simulator, args.trace, args.seed)

    rows = []
    plan = [(n, p, "fast") for n in args.sizes for p in ("fcfs", "sjf")]
    if args.reference_size:
        plan += [(args.reference_size, p, "reference") for p in ("fcfs", "sjf")]
    for n, policy, simulator in plan:
        runs, base = [], []
        for _ in range(args.repeats):  # interleaved, so that both see the same noise
            runs.append(run(n, policy, simulator, args.trace, args.seed))
            if args.baseline:
                base.append(run(n, policy, simulator, args.trace, args.seed, args.baseline))
        cpu = statistics.median(r["cpu_s"] for r in runs)
        r0 = runs[0]
        rows.append({**r0, "cpu_s": cpu, "cpus": [round(r["cpu_s"], 2) for r in runs],
                     "wall_s": statistics.median(r["wall_s"] for r in runs),
                     "rss_mb": max(r["rss_mb"] for r in runs)})
        print(f"{simulator:>9} {policy:>4} {n:>10,} req: {cpu:8.2f} CPU s (median of "
              f"{len(runs)}: {rows[-1]['cpus']}; wall {rows[-1]['wall_s']:.2f} s), "
              f"{n / cpu:9,.0f} req/s, {r0['iterations']:>11,} iterations, "
              f"peak RSS {rows[-1]['rss_mb']:6.0f} MB, mean E2E {r0['mean_e2e_s']:.2f} s",
              flush=True)
        if base:
            b_cpu = statistics.median(r["cpu_s"] for r in base)
            same = all(r["mean_e2e_s"] == r0["mean_e2e_s"] for r in base)
            print(f"{'baseline':>9} {policy:>4} {n:>10,} req: {b_cpu:8.2f} CPU s (median of "
                  f"{len(base)}: {[round(r['cpu_s'], 2) for r in base]}); this / baseline = "
                  f"{cpu / b_cpu:.3f}; same mean E2E: {same}", flush=True)

    def cpu(n, policy, simulator="fast"):
        return next((r["cpu_s"] for r in rows if (r["requests"], r["policy"], r["simulator"])
                     == (n, policy, simulator)), None)

    print()
    for policy in ("fcfs", "sjf"):
        ref = cpu(args.reference_size, policy, "reference")
        fast = cpu(args.reference_size, policy)
        if ref and fast:
            print(f"{policy}: the fast simulator is {ref / fast:.1f}x the reference at "
                  f"{args.reference_size:,} requests")
        a, b = cpu(100_000, policy), cpu(1_000_000, policy)
        if a and b:
            print(f"{policy}: 1M / 100k CPU time = {b / a:.1f}x (linear would be 10x)")

if __name__ == "__main__":
    main()
