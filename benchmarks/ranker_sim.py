"""Do better length predictors buy better latency? The simulator on held-out prompts.

Requests are drawn from CASTILLO's test prompts (unseen by every predictor in training),
each with one of its 10 real output lengths of the chosen LLM, Poisson arrivals at
`--load` x the measured capacity of one Llama-3.1-8B replica on an H100 (roofline costs,
vLLM defaults). Every policy runs on the same requests; "gap closed" is the share of the
FCFS -> oracle-SJF improvement of mean E2E (and of mean TTFT) that a policy achieves:
(FCFS - policy) / (FCFS - SJF). Median over seeds; per-seed figures in the JSON.

    python benchmarks/ranker_sim.py --predictors llmsim-out/predictors \
        --llm Llama-3.1-8B-Instruct --load 1.0 --requests 20000 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmsim.capacity import capacity_rps
from llmsim.policies import get_policy
from llmsim.predictors import EmbeddingCache, default_cache_dir, load_predictor, predictor_policy
from llmsim.simulate import Deployment, simulate
from llmsim.traces import arrivals, load_castillo_pool, synthesize

KINDS = ("pars", "pointwise", "listmle", "lgbm", "length")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/castillo")
    ap.add_argument("--predictors", default="llmsim-out/predictors",
                    help="folder holding <kind>-<llm> predictor folders")
    ap.add_argument("--llm", default="Llama-3.1-8B-Instruct")
    ap.add_argument("--load", type=float, default=1.0)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--model", default="llama-3.1-8b", help="deployment model shape")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    pool = load_castillo_pool(args.data, model=args.llm, split="test")
    deployment = Deployment(model=args.model)
    cost = deployment.cost_model()
    predictors = {k: load_predictor(Path(args.predictors) / f"{k}-{args.llm}") for k in KINDS}
    for p in predictors.values():  # neural: embeddings from the cache `llmsim train` filled
        if hasattr(p, "cache"):
            p.cache = EmbeddingCache(default_cache_dir(), p.config.max_tokens)
    probe = synthesize(4000, pool, np.zeros(4000), np.random.default_rng(12345))
    capacity = capacity_rps(probe, deployment, cost)
    rate = args.load * capacity
    print(f"{len(pool)} held-out prompts of {args.llm}; capacity {capacity:.2f} req/s; "
          f"load {args.load} -> {rate:.2f} req/s; {args.requests} requests x {args.seeds} seeds")

    runs: dict[str, list[dict]] = {}
    started = time.perf_counter()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        w = synthesize(args.requests, pool, arrivals.Poisson(rate), rng)
        policies = [get_policy("fcfs"), get_policy("sjf"), get_policy("sjf+sp")]
        for kind, p in predictors.items():
            base = predictor_policy(kind, p, w)
            policies += [base, predictor_policy(kind, p, w, starvation=True)]
        for policy in policies:
            s = simulate(w, policy, deployment, cost=cost).summary
            runs.setdefault(policy.name, []).append({
                "seed": seed, "e2e_mean": s["e2e"]["mean"], "e2e_p90": s["e2e"]["p90"],
                "ttft_mean": s["ttft"]["mean"], "ttft_p90": s["ttft"]["p90"],
                "completed": s["completed"], "preemptions": s["preemptions"]})
    elapsed = time.perf_counter() - started

    med = {name: {k: float(np.median([r[k] for r in rs])) for k in rs[0] if k != "seed"}
           for name, rs in runs.items()}

    def gap(name: str, key: str) -> float:
        f, o = med["fcfs"][key], med["sjf"][key]
        return (f - med[name][key]) / (f - o) if f != o else float("nan")

    print("\n| policy | E2E mean (s) | E2E P90 (s) | TTFT mean (s) | TTFT P90 (s) | "
          "gap closed, E2E mean | gap closed, TTFT mean |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m['e2e_mean']:.2f} | {m['e2e_p90']:.2f} | {m['ttft_mean']:.2f} | "
              f"{m['ttft_p90']:.2f} | {gap(name, 'e2e_mean'):.0%} | {gap(name, 'ttft_mean'):.0%} |")
    print(f"\n{len(runs)} policies x {args.seeds} seeds simulated in {elapsed:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "llm": args.llm, "load": args.load, "capacity_rps": capacity, "rate_rps": rate,
            "requests": args.requests, "seeds": args.seeds, "deployment": deployment.to_dict(),
            "cost_model": cost.label, "median": med, "runs": runs,
            "gap_closed": {n: {"e2e_mean": gap(n, "e2e_mean"), "ttft_mean": gap(n, "ttft_mean")}
                           for n in med}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
