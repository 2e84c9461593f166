"""Does `--load` mean what it says? Queues must stay bounded at 0.9x the measured capacity
and grow without bound at 1.1x, on every workload, heavy tails included.

For each workload: its capacity (`llmsim.capacity`, with the probe's size and CPU time,
and the previous definition's figure beside it: 20,000 requests drawn at random, completion
rate between the 30th and 70th percentile completions); then `--requests` requests drawn
at random from its lengths arrive as a Poisson process (or gamma, `--burstiness`) at 0.9x,
1.0x and 1.1x that capacity, under FCFS. Printed per run: the mean queueing delay (arrival
to first scheduled) of the first and the last sixth of the arrivals, and the backlog (requests
arrived but not yet scheduled) at the last arrival, as a share of the requests. A queue is
*bounded* when the last sixth waits under 1 s on average and the backlog is under 0.1%;
*growing* when the backlog is over 1% and the last sixth waits 3x longer than the first
(a queue growing steadily from empty waits 11x longer in the last sixth than in the first).

    python benchmarks/capacity_check.py --json docs/results/capacity-check.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmsim.capacity import measure
from llmsim.policies import FCFS
from llmsim.simulate import Deployment, simulate
from llmsim.traces import arrivals, load_castillo_pool, load_trace, synthesize
from llmsim.traces.workload import Workload

WORKLOADS = {  # name: (lengths, model shape of the deployment)
    "azure-conv": ("azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "llama-3-8b"),
    "azure-code": ("azure_llm_2023/AzureLLMInferenceTrace_code.csv", "llama-3-8b"),
    "castillo-llama": ("castillo:Llama-3.1-8B-Instruct", "llama-3.1-8b"),
    "castillo-qwen": ("castillo:Qwen2.5-7B-Instruct-1M", "qwen2.5-7b"),
    "arxiv": ("vidur_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
              "llama-3-8b"),
    "mooncake-conv": ("mooncake/conversation_trace.jsonl", "llama-3-8b"),
}
LOADS = (0.9, 1.0, 1.1)


def lengths(data: Path, spec: str) -> Workload:
    """The workload's requests (their lengths are what matters here). CASTILLO: 20,000
    requests drawn from the test split's prompts, each with one of its 10 real lengths, as
    the README's predictor example runs it."""
    if spec.startswith("castillo:"):
        pool = load_castillo_pool(data / "castillo", model=spec.split(":")[1], split="test")
        return synthesize(20000, pool, np.zeros(20000), np.random.default_rng(0))
    return load_trace(data / spec)


def old_capacity(workload: Workload, deployment: Deployment, cost) -> float:
    """The previous definition, for comparison: 20,000 requests drawn at random, all at
    t=0, completion rate between the 30th and 70th percentile completions."""
    rows = np.random.default_rng(0).integers(0, len(workload), 20000)
    w = Workload(np.zeros(20000), workload.prompt_tokens[rows], workload.output_tokens[rows])
    finish = np.sort(simulate(w, FCFS, deployment, cost=cost).records.finish)
    finish = finish[~np.isnan(finish)]
    lo, hi = int(0.3 * len(finish)), int(0.7 * len(finish)) - 1
    return (hi - lo) / (finish[hi] - finish[lo])


def queue_check(workload: Workload, deployment: Deployment, cost, rate: float, n: int,
                burstiness: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(workload), n)
    times = arrivals.gamma(n, rate, burstiness, rng)
    run = simulate(Workload(times, workload.prompt_tokens[rows], workload.output_tokens[rows]),
                   FCFS, deployment, cost=cost)
    r = run.records
    delay = r.first_scheduled - r.arrival
    sixth = n // 6
    first, last = float(np.nanmean(delay[:sixth])), float(np.nanmean(delay[-sixth:]))
    end = times[-1]
    backlog = int(np.count_nonzero(times <= end) - np.count_nonzero(r.first_scheduled <= end))
    share = backlog / n
    verdict = ("bounded" if last < 1.0 and share < 0.001 else
               "growing" if share > 0.01 and last > 3 * max(first, 0.01) else "unclear")
    return {"rate_rps": rate, "queue_first_sixth_s": first, "queue_last_sixth_s": last,
            "backlog": backlog, "backlog_share": share, "preemptions": run.summary["preemptions"],
            "verdict": verdict}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--requests", type=int, default=40000, help="requests per queue run")
    ap.add_argument("--burstiness", type=float, default=1.0, help="gamma shape; 1 is Poisson")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    rows = []
    print(f"{'workload':<15} {'capacity':>9} {'old':>7} {'probe':>7} {'cpu':>6}   "
          + "   ".join(f"{k:.1f}x: queue first/last sixth, backlog" for k in LOADS))
    for name in args.workloads.split(","):
        spec, model = WORKLOADS[name]
        workload = lengths(args.data, spec)
        deployment = Deployment(model=model)
        cost = deployment.cost_model()
        started = time.process_time()
        probe = measure(workload, deployment, cost)
        cpu = time.process_time() - started
        old = old_capacity(workload, deployment, cost)
        checks = [queue_check(workload, deployment, cost, k * probe.rate_rps, args.requests,
                              args.burstiness, args.seed) for k in LOADS]
        rows.append({"workload": name, "source": workload.source, "model": model,
                     "capacity_rps": probe.rate_rps, "old_capacity_rps": old,
                     "probe_requests": probe.requests, "probe_window_s": probe.window_s,
                     "probe_preemptions": probe.preemptions, "probe_cpu_s": cpu,
                     "checks": dict(zip([str(k) for k in LOADS], checks, strict=True))})
        cells = "   ".join(f"{c['queue_first_sixth_s']:7.2f}/{c['queue_last_sixth_s']:7.2f} s "
                           f"{c['backlog_share']:6.1%} {c['verdict']:<7}" for c in checks)
        print(f"{name:<15} {probe.rate_rps:9.2f} {old:7.2f} {probe.requests:7d} {cpu:5.1f}s   "
              f"{cells}", flush=True)
    ok = all(r["checks"]["0.9"]["verdict"] == "bounded" and r["checks"]["1.1"]["verdict"]
             == "growing" for r in rows)
    print(f"bounded at 0.9x and growing at 1.1x on every workload: {'yes' if ok else 'NO'} "
          f"({args.requests} requests per run, "
          f"{'Poisson' if args.burstiness == 1 else f'gamma({args.burstiness:g})'} arrivals, "
          f"seed {args.seed})")
    if args.json is not None:
        args.json.write_text(json.dumps({"requests": args.requests, "burstiness":
                                         args.burstiness, "seed": args.seed, "workloads": rows},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
