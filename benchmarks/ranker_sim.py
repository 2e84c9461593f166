"""Do better length predictors buy better latency? The simulator on held-out prompts.

Requests are drawn from CASTILLO's test prompts (unseen by every predictor in training),
each with one of its 10 real output lengths of the chosen LLM, arriving at the times of
the Azure 2023 conversation trace (its real burstiness) rescaled to `--load` x the
measured capacity of one Llama-3.1-8B replica on an H100 (roofline costs, vLLM defaults);
`--arrivals poisson` draws Poisson times instead. With 256 seats the engine barely queues
below capacity under smooth arrivals: queues, and so ordering, come from bursts.
Every policy runs on the same requests; "gap closed" is the share of the FCFS ->
oracle-SJF improvement of mean E2E (and of mean TTFT) that a policy achieves:
(FCFS - policy) / (FCFS - SJF). Median over seeds; per-seed figures in the JSON.

    python benchmarks/ranker_sim.py --predictors llmsim-out/predictors \
        --llm Llama-3.1-8B-Instruct --load 1.0 --requests 19000 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmsim.capacity import capacity_rps
from llmsim.policies import get_policy, with_starvation_prevention
from llmsim.policies.predicted import predicted_sjf
from llmsim.predictors import EmbeddingCache, default_cache_dir, load_predictor, predictor_policy
from llmsim.simulate import Deployment, simulate
from llmsim.traces import arrivals, load_castillo_pool, load_trace, synthesize

KINDS = ("pars", "pointwise", "listmle", "lgbm", "length")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/castillo")
    ap.add_argument("--predictors", default="llmsim-out/predictors",
                    help="folder holding <kind>-<llm> predictor folders")
    ap.add_argument("--llm", default="Llama-3.1-8B-Instruct")
    ap.add_argument("--load", type=float, default=1.0)
    ap.add_argument("--requests", type=int, default=19000)
    ap.add_argument("--arrivals", default="../shared/data/azure_llm_2023/"
                    "AzureLLMInferenceTrace_conv.csv", help="a trace whose times to replay, "
                    "or 'poisson'")
    ap.add_argument("--seeds", type=int, default=5)
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

    if args.arrivals == "poisson":
        process = arrivals.Poisson(rate)
    else:
        times = load_trace(args.arrivals).arrival
        process = arrivals.Replay(arrivals.scale_to_rate(times, rate))
    print(f"arrivals: {process.describe()} ({args.arrivals})")
    runs: dict[str, list[dict]] = {}
    started = time.perf_counter()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        w = synthesize(args.requests, pool, process, rng)
        policies = [get_policy("fcfs"), get_policy("sjf"), get_policy("sjf+sp")]
        # The best any prompt-only predictor can know: the prompt's mean length over its
        # 10 samples (the noise ceiling of `llmsim evaluate-ranker`, as a policy).
        ceiling = predicted_sjf("prompt-mean", pool.output_sizes.mean(axis=1)[w.prompt_id])
        policies += [ceiling, with_starvation_prevention(ceiling)]
        for kind, p in predictors.items():
            base = predictor_policy(kind, p, w)
            policies += [base, predictor_policy(kind, p, w, starvation=True)]
        for policy in policies:
            s = simulate(w, policy, deployment, cost=cost).summary
            runs.setdefault(policy.name, []).append({
                "seed": seed, "e2e_mean": s["e2e"]["mean"], "e2e_p90": s["e2e"]["p90"],
                "e2e_p99": s["e2e"]["p99"], "ttft_mean": s["ttft"]["mean"],
                "ttft_p90": s["ttft"]["p90"], "ttft_p99": s["ttft"]["p99"],
                "completed": s["completed"], "preemptions": s["preemptions"]})
    elapsed = time.perf_counter() - started

    med = {name: {k: float(np.median([r[k] for r in rs])) for k in rs[0] if k != "seed"}
           for name, rs in runs.items()}

    def gap(name: str, key: str) -> float:
        """Pooled over seeds: sum(FCFS - policy) / sum(FCFS - SJF). Seeds where little
        queues (FCFS ~ SJF) weigh little instead of making the ratio noisy."""
        f, o, x = ([r[key] for r in runs[n]] for n in ("fcfs", "sjf", name))
        total = sum(f) - sum(o)
        return (sum(f) - sum(x)) / total if total else float("nan")

    def spread(name: str, key: str) -> str:
        v = [r[key] for r in runs[name]]
        return f"{med[name][key]:.2f} ({min(v):.1f}-{max(v):.1f})"

    print("\n| policy | E2E mean (s) | E2E P90 | E2E P99 | TTFT mean (s) | TTFT P90 | "
          "TTFT P99 | gap closed, E2E mean | gap closed, TTFT mean |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {spread(name, 'e2e_mean')} | {m['e2e_p90']:.1f} | "
              f"{m['e2e_p99']:.1f} | {spread(name, 'ttft_mean')} | {m['ttft_p90']:.2f} | "
              f"{m['ttft_p99']:.1f} | {gap(name, 'e2e_mean'):.0%} | "
              f"{gap(name, 'ttft_mean'):.0%} |")
    print("\nlatencies: median over seeds (min-max of the means in brackets); gap closed: "
          "pooled over seeds")
    print(f"\n{len(runs)} policies x {args.seeds} seeds simulated in {elapsed:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "llm": args.llm, "load": args.load, "capacity_rps": capacity, "rate_rps": rate,
            "requests": args.requests, "seeds": args.seeds, "arrivals": process.describe(),
            "arrival_source": args.arrivals, "deployment": deployment.to_dict(),
            "cost_model": cost.label, "median": med, "runs": runs,
            "gap_closed": {n: {"e2e_mean": gap(n, "e2e_mean"), "ttft_mean": gap(n, "ttft_mean")}
                           for n in med}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
