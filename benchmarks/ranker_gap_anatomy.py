"""What a ranker's missing gap is made of: splice the prompt-level oracle into its ranking.

A predictor closes part of the FCFS -> oracle-SJF gap in mean E2E (benchmarks/ranker_sim.py).
This asks which of its mistakes cost the rest, on the study's own replicates (same prompts,
draws and arrivals): the predictor's ranking is kept and one part of it is replaced by the
order of the **prompt oracle**, each prompt's mean cost (p x o + o^2/2, capped) over all its
samples:
- `within DATASET`: inside one CASTILLO source set, the predictor's scores are reordered to
  follow the oracle (the same values, so the set's place among the others is kept);
- `top Q%`: the Q% of prompts the oracle ranks costliest are moved to their oracle place;
- `top 3% in last X%`: those prompts put at random in the last X% of the ranking instead,
  to say how far back they must go;
- `noisy oracle s`: the oracle's log cost plus Gaussian noise of s standard deviations, with
  its Kendall tau against the oracle: what a predictor of that rank quality with errors
  spread evenly would close (three draws each: where the few costly prompts land varies).
The predictor's place for the oracle's top 3% is printed too.

    python benchmarks/ranker_gap_anatomy.py \\
        --predictor llmsim-out/study/pars-Llama-3.1-8B-Instruct-cap4096-s0 --cap 4096
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
from ranker_sim import AZURE, DEPLOYMENT_OF, cap_pool, pool_capacity, replicate, summarise
from scipy import stats

from llmsim.policies import get_policy
from llmsim.policies.predicted import predicted_sjf
from llmsim.predictors import EmbeddingCache, default_cache_dir, load_predictor
from llmsim.predictors.cost import RequestCost
from llmsim.simulate import Deployment, simulate
from llmsim.traces import load_castillo_pool, load_trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictor", type=Path, required=True, help="a predictor folder")
    ap.add_argument("--data", default="../shared/data/castillo")
    ap.add_argument("--llm", default="Llama-3.1-8B-Instruct")
    ap.add_argument("--cap", type=int, default=4096, help="max_tokens; 0: uncapped")
    ap.add_argument("--load", type=float, default=1.0)
    ap.add_argument("--arrivals", default="azure", choices=("azure", "poisson"))
    ap.add_argument("--azure", default=AZURE)
    ap.add_argument("--replicates", type=int, default=10)
    ap.add_argument("--requests", type=int, default=19000)
    ap.add_argument("--gpu", default="h100")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()

    pool = cap_pool(load_castillo_pool(args.data, model=args.llm, split="test"), args.cap)
    predictor = load_predictor(args.predictor)
    if hasattr(predictor, "cache"):
        predictor.cache = EmbeddingCache(default_cache_dir(), predictor.config.max_tokens)
    scores = percentile(predictor.score(pool.text, pool.input_size))
    oracle = RequestCost()(pool.input_size, pool.output_sizes).mean(axis=1)
    rankings = spliced(scores, oracle, np.asarray(pool.dataset), np.random.default_rng(0))

    top = percentile(oracle) >= 0.97
    print(f"{args.predictor.name} on {len(pool)} test prompts: Kendall tau with the prompt "
          f"oracle {stats.kendalltau(scores, oracle).statistic:.3f}; the oracle's top 3% "
          f"({top.sum()} prompts, mean output {pool.output_sizes[top].mean():.0f} tokens "
          f"against {pool.output_sizes.mean():.0f}) sit at its percentiles "
          + " ".join(f"{p:.2f}" for p in np.sort(scores[top])))

    deployment = Deployment(model=DEPLOYMENT_OF.get(args.llm, "llama-3.1-8b"), gpu=args.gpu)
    cost_model = deployment.cost_model()
    rate = args.load * pool_capacity(pool, deployment, cost_model)
    gaps = np.diff(load_trace(args.azure).arrival) if args.arrivals == "azure" else None
    names = ["fcfs", "sjf", *rankings]
    runs = []
    for r in range(args.replicates):
        prompts, w = replicate(pool, r, args.requests, rate, args.arrivals, gaps)
        run = {}
        for name in names:
            policy = (get_policy(name) if name in ("fcfs", "sjf")
                      else predicted_sjf(name, rankings[name][prompts]))
            s = simulate(w, policy, deployment, cost=cost_model).summary
            run[name] = {"e2e_mean": s["e2e"]["mean"], "e2e_p99": s["e2e"]["p99"]}
        runs.append(run)
        print(f"  replicate {r + 1}/{args.replicates}", flush=True)
    gap = summarise(runs, names)["gap"]
    print(f"\n{args.llm}, cap {args.cap or 'none'}, load {args.load:g}, {args.arrivals} "
          f"arrivals, {rate:.2f} req/s, {args.replicates} replicates of {args.requests}:")
    print("| ranking | gap closed | 95% CI |\n|---|---:|---:|")
    for name in names[2:]:
        g = gap[name]
        print(f"| {name} | {g['closed']:.1%} | {g['ci'][0]:.0%} to {g['ci'][1]:.0%} |")
    print(f"\n{len(names)} policies x {args.replicates} replicates in "
          f"{time.perf_counter() - started:.0f} s")


def percentile(x: np.ndarray) -> np.ndarray:
    return (stats.rankdata(x) - 0.5) / len(x)


def spliced(scores: np.ndarray, oracle: np.ndarray, dataset: np.ndarray,
            rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The predictor's percentiles with one part replaced by the oracle's order."""
    where = percentile(oracle)
    out = {"predictor": scores, "prompt oracle": where}
    for name in [*sorted(set(dataset)), "every set"]:
        rows = [dataset == name] if name != "every set" else [dataset == d for d in set(dataset)]
        s = scores.copy()
        for m in rows:  # the set's own values, in the oracle's order
            s[m] = np.sort(s[m])[stats.rankdata(oracle[m], method="ordinal").astype(int) - 1]
        out[f"within {name}"] = s
    for q in (0.015, 0.03, 0.10):
        s, m = scores.copy(), where >= 1 - q
        s[m] = where[m]
        out[f"top {q:.1%}"] = s
    m = where >= 0.97
    for last in (0.05, 0.10, 0.20):
        s = scores.copy()
        s[m] = rng.uniform(1 - last, 1, m.sum())
        out[f"top 3% in last {last:.0%}"] = s
    z = np.log(oracle)
    z = (z - z.mean()) / z.std()
    for sd in (0.5, 0.75, 1.0):
        for draw in range(1, 4):  # where a few costly prompts land differs from draw to draw
            noisy = z + rng.normal(0, sd, len(z))
            tau = stats.kendalltau(noisy, oracle).statistic
            out[f"noisy oracle {sd:g}, draw {draw} (tau {tau:.2f})"] = noisy
    assert all(np.all(np.isfinite(s)) for s in out.values())
    return out


if __name__ == "__main__":
    main()
