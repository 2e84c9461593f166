"""Which length predictor buys latency? The simulator on held-out prompts, with intervals.

For each setting (LLM whose lengths, load, max_tokens cap, arrivals) and each of
`--replicates` replicates r:
- the 1,110 CASTILLO test prompts (unseen by every predictor in training) are resampled
  with replacement (the prompts vary), `--requests` requests are drawn from them, each with
  one of its 10 real output lengths (the draws vary), capped at `--cap` as a server with
  that `max_tokens` would run them;
- arrivals: the Azure 2023 conversation trace's gaps from a random offset (its real
  bursts, at another place each replicate), or Poisson; rescaled to load x the capacity
  that `llmsim.capacity` measures for that LLM's deployment on the (capped) test pool;
- each learned predictor is the one trained with seed r mod `--train-seeds` (training
  varies), on lengths capped as the setting caps them;
- every policy runs on the same requests (paired).
"gap closed" = sum over replicates of (FCFS - policy) / sum of (FCFS - oracle SJF), of mean
E2E; 95% intervals from resampling the replicates (each replicate draws prompts, samples,
arrivals and training seed afresh, so the interval covers all four). Paired differences
against prompt length and LightGBM are resampled the same way.

`ceiling` is the best any prompt-only predictor can know: each request ranked by the mean
cost of its prompt's *other* samples (the drawn one excluded). `pars` is scored through the
vLLM plug-in's own path (`PriorityAssigner`: one request at a time, the score mapped to
vLLM's integer priority), and the script checks that it orders requests exactly as the
simulator's scores do.

    python benchmarks/ranker_sim.py --predictors llmsim-out/study --replicates 12 \
        --out docs/results/ranker-study
    python benchmarks/ranker_sim.py --out docs/results/ranker-study --report  # table, plot

Each setting is written to its own JSON file in `--out` as soon as it is done, and a
setting whose file exists is not run again: an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from llmsim.capacity import capacity_rps
from llmsim.policies import get_policy, with_starvation_prevention
from llmsim.policies.predicted import predicted_sjf
from llmsim.predictors import EmbeddingCache, default_cache_dir, load_predictor
from llmsim.predictors.cost import RequestCost
from llmsim.simulate import Deployment, simulate
from llmsim.traces import load_castillo_pool, load_trace
from llmsim.traces.pool import PromptPool
from llmsim.traces.workload import Workload

LEARNED = ("lgbm", "lgbm-cost", "pars-v1", "pars")
BUILTIN = ("fcfs", "sjf", "ceiling", "length")  # any other policy name is a predictor folder
BASES = ("length", "lgbm", "pars", "pars-1")  # paired differences are taken against these
DEPLOYMENT_OF = {"Llama-3.1-8B-Instruct": "llama-3.1-8b", "Qwen2.5-7B-Instruct-1M": "qwen2.5-7b"}
AZURE = "../shared/data/azure_llm_2023/AzureLLMInferenceTrace_conv.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/castillo")
    ap.add_argument("--predictors", default="llmsim-out/study",
                    help="folder of <kind>-<llm>-cap<N>-s<seed> predictor folders "
                         "(benchmarks/ranker_train.sh)")
    ap.add_argument("--llms", default="Llama-3.1-8B-Instruct,Qwen2.5-7B-Instruct-1M")
    ap.add_argument("--loads", default="1.0,1.05", help="x the measured capacity")
    ap.add_argument("--caps", default="0,4096", help="max_tokens caps; 0: uncapped")
    ap.add_argument("--arrivals", default="azure,poisson")
    ap.add_argument("--azure", default=AZURE, help="the trace whose gaps 'azure' replays")
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--train-seeds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=19000)
    ap.add_argument("--policies", default="fcfs,sjf,ceiling,length," + ",".join(LEARNED),
                    help="fcfs, sjf, ceiling, length, or NAME: the predictors "
                         "NAME-<llm>-cap<N>-s<seed> in --predictors (variants too, e.g. "
                         "pars-ft); NAME+sp with starvation prevention, NAME+spN "
                         "promoting after N iterations waiting (default 100)")
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--out", type=Path, default=Path("llmsim-out/ranker-study"),
                    help="folder of one JSON file per setting")
    ap.add_argument("--report", action="store_true",
                    help="only print the table (and draw the plot) of the settings in --out")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.report:
        report(args.out)
        return

    names = args.policies.split(",")
    assert {"fcfs", "sjf"} <= set(names), "the gap needs fcfs and sjf"
    gaps = np.diff(load_trace(args.azure).arrival) if "azure" in args.arrivals else None
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    done = 0
    for llm in args.llms.split(","):
        pool = load_castillo_pool(args.data, model=llm, split="test")
        deployment = Deployment(model=DEPLOYMENT_OF.get(llm, "llama-3.1-8b"), gpu=args.gpu)
        cost_model = deployment.cost_model()
        for cap in (int(c) for c in args.caps.split(",")):
            capped_pool = cap_pool(pool, cap)
            settings = [(load, arrivals) for load, arrivals in itertools.product(
                (float(x) for x in args.loads.split(",")), args.arrivals.split(","))
                if not _path(args.out, llm, cap, load, arrivals).exists()]
            if not settings:
                continue
            capacity = pool_capacity(capped_pool, deployment, cost_model)
            scores = {name: [_scores(args, name, llm, cap, s, capped_pool)
                             for s in range(args.train_seeds)]
                      for name in {_split_sp(n)[0] for n in names} - set(BUILTIN)}
            for load, arrivals in settings:
                setting = {"llm": llm, "cap": cap, "load": load, "arrivals": arrivals,
                           "capacity_rps": capacity, "rate_rps": load * capacity,
                           "deployment": deployment.to_dict(), "cost_model": cost_model.label}
                print(f"\n== {llm}, cap {cap or 'none'}, load {load}, {arrivals} arrivals: "
                      f"capacity {capacity:.2f} req/s, rate {load * capacity:.2f} req/s",
                      flush=True)
                runs = _replicates(args, names, capped_pool, scores, load * capacity, arrivals,
                                   gaps, deployment, cost_model)
                summary = summarise(runs, names)
                _print(summary, names)
                doc = {"setting": setting, "requests": args.requests,
                       "replicates": args.replicates, "train_seeds": args.train_seeds,
                       "predictors": args.predictors, "arrival_trace": args.azure,
                       "summary": summary, "runs": runs}
                path = _path(args.out, llm, cap, load, arrivals)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(doc, indent=1) + "\n")
                tmp.rename(path)  # whole or absent: a rerun skips only finished settings
                done += 1
    print(f"\n{done} settings x {args.replicates} replicates x {len(names)} policies in "
          f"{time.perf_counter() - started:.0f} s; figures in {args.out}")


def _path(out: Path, llm: str, cap: int, load: float, arrivals: str) -> Path:
    return out / f"{llm}-cap{cap}-load{load:g}-{arrivals}.json"


def cap_pool(pool: PromptPool, cap: int) -> PromptPool:
    """The pool's lengths as a server with `max_tokens=cap` runs them (0: uncapped)."""
    sizes = pool.output_sizes if not cap else np.minimum(pool.output_sizes, cap)
    return PromptPool(pool.prompt_id, pool.input_size, sizes, text=pool.text,
                      model=pool.model, dataset=pool.dataset, source=pool.source)


def _workload(pool: PromptPool, prompts: np.ndarray, rng: np.random.Generator,
              arrival: np.ndarray) -> Workload:
    """Requests for the given pool rows, each with one of its samples at random."""
    pick = rng.integers(0, pool.samples, len(prompts))
    return Workload(arrival, pool.input_size[prompts], pool.output_sizes[prompts, pick],
                    prompt_id=prompts, source=f"{len(prompts)} requests from {pool.source}")


def replicate(pool: PromptPool, r: int, requests: int, rate: float, arrivals: str,
              gaps: np.ndarray | None) -> tuple[np.ndarray, Workload]:
    """Replicate r's requests: (the pool row of each, the workload). The prompts are
    resampled, each request draws one of its prompt's samples, and arrivals are Poisson or
    the trace's `gaps` from a random offset, rescaled to `rate`."""
    rng = np.random.default_rng([r, 15])
    boot = rng.integers(0, len(pool), len(pool))  # the prompts, resampled
    prompts = boot[rng.integers(0, len(boot), requests)]
    if arrivals == "poisson":
        times = np.cumsum(rng.exponential(1.0 / rate, requests))
    else:
        g = np.roll(gaps, -int(rng.integers(len(gaps))))
        g = np.resize(g, requests - 1)
        times = np.concatenate([[0.0], np.cumsum(g)])
        times *= (requests - 1) / rate / times[-1]
    return prompts, _workload(pool, prompts, rng, times)


def pool_capacity(pool: PromptPool, deployment: Deployment, cost_model) -> float:
    """One replica's capacity (req/s) for the pool's mix: each prompt 4 times, a sample
    each, through `llmsim.capacity`."""
    probe = _workload(pool, np.arange(len(pool)).repeat(4), np.random.default_rng(12345),
                      np.zeros(4 * len(pool)))
    return capacity_rps(probe, deployment, cost_model)


def _scores(args, name: str, llm: str, cap: int, seed: int, pool: PromptPool) -> np.ndarray:
    """One score per pool prompt; `pars` through the vLLM plug-in's priority path."""
    folder = Path(args.predictors) / f"{name}-{llm}-cap{cap}-s{seed}"
    predictor = load_predictor(folder)
    if hasattr(predictor, "cache"):
        predictor.cache = EmbeddingCache(default_cache_dir(), predictor.config.max_tokens)
    scores = predictor.score(pool.text, pool.input_size)
    if name != "pars":
        return scores
    priorities = plugin_priorities(folder, pool, predictor)
    reversed_, tied, pairs = order_agreement(scores, priorities)
    print(f"  {folder.name}: of {pairs:,} prompt pairs the scores order, the plug-in's "
          f"priorities reverse {reversed_} and tie {tied} (closer than 1/scale)", flush=True)
    assert reversed_ == 0, folder
    return priorities.astype(np.float64)


def plugin_priorities(folder: Path, pool: PromptPool, predictor) -> np.ndarray:
    """vLLM priorities as the plug-in assigns them, one request at a time (the predictor
    is handed over already loaded, with the embedding cache, to save re-encoding)."""
    from llmsim.integrations.vllm_priority import (
        AssignerConfig,
        PredictorScorer,
        PriorityAssigner,
        PromptInfo,
    )

    scorer = PredictorScorer.__new__(PredictorScorer)
    scorer.folder, scorer.predictor, scorer.load_error = folder, predictor, None
    assigner = PriorityAssigner(AssignerConfig(policy=str(folder)), logging.getLogger("study"),
                                scorer)
    out = np.array([assigner.priority(PromptInfo(None, [0] * int(n), lambda t=t: t))
                    for t, n in zip(pool.text, pool.input_size, strict=True)], dtype=np.int64)
    assert assigner.fallbacks == 0, f"{assigner.fallbacks} prompts could not be scored"
    return out


def order_agreement(scores: np.ndarray, priorities: np.ndarray) -> tuple[int, int, int]:
    """(pairs the priorities reverse, pairs they tie, pairs the scores order strictly).
    Tied requests go first come first served in vLLM and in the simulator alike."""
    i, j = np.triu_indices(len(scores), 1)
    ds, dp = np.sign(scores[i] - scores[j]), np.sign(priorities[i] - priorities[j])
    strict = ds != 0
    return int((ds * dp < 0).sum()), int((strict & (dp == 0)).sum()), int(strict.sum())


def _replicates(args, names, pool, scores, rate, arrivals, gaps, deployment, cost_model):
    cost = RequestCost()
    runs = []
    for r in range(args.replicates):
        prompts, w = replicate(pool, r, args.requests, rate, arrivals, gaps)
        row_cost = cost(pool.input_size, pool.output_sizes).sum(axis=1)
        drawn = cost(w.prompt_tokens, w.output_tokens)
        loo = (row_cost[prompts] - drawn) / (pool.samples - 1)
        seed = r % args.train_seeds
        run = {"replicate": r, "train_seed": seed}
        for name in names:
            base, sp = _split_sp(name)
            if base in ("fcfs", "sjf"):
                policy = get_policy(base)
            elif base == "ceiling":
                policy = predicted_sjf("ceiling", loo)
            elif base == "length":
                policy = predicted_sjf("length", w.prompt_tokens.astype(np.float64))
            else:
                policy = predicted_sjf(base, scores[base][seed][prompts])
            if sp is not None:
                policy = with_starvation_prevention(policy, **sp)
            s = simulate(w, policy, deployment, cost=cost_model).summary
            run[name] = {"e2e_mean": s["e2e"]["mean"], "e2e_p90": s["e2e"]["p90"],
                         "e2e_p99": s["e2e"]["p99"], "ttft_mean": s["ttft"]["mean"],
                         "ttft_p99": s["ttft"]["p99"], "completed": s["completed"]}
        runs.append(run)
        f, o = run["fcfs"]["e2e_mean"], run["sjf"]["e2e_mean"]
        print(f"  replicate {r + 1}/{args.replicates}: FCFS {f:.2f} s, SJF {o:.2f} s; " +
              ", ".join(f"{n} {_gap1(run, n):.0%}" for n in names if n not in ("fcfs", "sjf")),
              flush=True)
    return runs


def _split_sp(name: str) -> tuple[str, dict | None]:
    """'pars' -> ('pars', None); 'pars+sp' -> ('pars', {}): starvation prevention with its
    defaults; 'pars+sp2000' -> ('pars', {'threshold': 2000}): promoted after 2,000
    iterations waiting."""
    base, sep, threshold = name.partition("+sp")
    if not sep:
        return name, None
    if threshold and not threshold.isdigit():
        raise SystemExit(f"{name}: expected NAME+sp or NAME+sp<iterations>")
    return base, {"threshold": int(threshold)} if threshold else {}


def _gap1(run: dict, name: str) -> float:
    f, o, x = (run[n]["e2e_mean"] for n in ("fcfs", "sjf", name))
    return (f - x) / (f - o) if f != o else float("nan")


def summarise(runs: list[dict], names: list[str], key: str = "e2e_mean",
              resamples: int = 4000, seed: int = 0) -> dict:
    """Pooled gap closed per policy with 95% intervals over replicates, and paired
    differences against `length`, `lgbm`, and `pars` and `pars-1` for its variants. A
    replicate that never queues has no gap (FCFS = SJF): it adds nothing to the pooled
    sums, and a resample made only of such replicates has no gap closed and is left out
    of the interval."""
    f = np.array([r["fcfs"][key] for r in runs])
    o = np.array([r["sjf"][key] for r in runs])
    x = {n: np.array([r[n][key] for r in runs]) for n in names}
    idx = np.random.default_rng(seed).integers(0, len(runs), (resamples, len(runs)))

    def pooled(v: np.ndarray, rows=slice(None)) -> np.ndarray:
        gap = (f[rows] - o[rows]).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(gap > 0, (f[rows] - v[rows]).sum(-1) / gap, np.nan)

    def interval(boot: np.ndarray) -> list[float]:
        boot = boot[~np.isnan(boot)]
        if not len(boot):
            return [math.nan, math.nan]
        return [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]

    def share_above(boot: np.ndarray) -> float:
        boot = boot[~np.isnan(boot)]
        return float((boot > 0).mean()) if len(boot) else math.nan

    out = {"fcfs_mean_s": float(f.mean()), "sjf_mean_s": float(o.mean()),
           "queued": int((f - o > 1e-9 * f).sum()), "gap": {}, "vs": {}}
    for n in names:
        boot = pooled(x[n], idx)
        out["gap"][n] = {"closed": float(pooled(x[n])), "ci": interval(boot),
                         "mean_s": float(x[n].mean()),
                         "p99_s": float(np.median([r[n]["e2e_p99"] for r in runs]))}
    for base in BASES:
        if base not in names:
            continue
        out["vs"][base] = {}
        for n in names:
            if n in ("fcfs", "sjf", base):
                continue
            diff = pooled(x[n]) - pooled(x[base])
            boot = pooled(x[n], idx) - pooled(x[base], idx)
            out["vs"][base][n] = {"difference": float(diff), "ci": interval(boot),
                                  "share_above": share_above(boot)}
    return out


def _print(summary: dict, names: list[str]) -> None:
    print(f"  FCFS mean E2E {summary['fcfs_mean_s']:.2f} s, oracle SJF "
          f"{summary['sjf_mean_s']:.2f} s (means over replicates)")
    bases = [b for b in BASES if b in summary["vs"]]
    print("  | policy | gap closed | 95% CI | mean E2E (s) | " +
          " | ".join(f"minus {b} [95% CI]" for b in bases) + " |")
    for n in names:
        g = summary["gap"][n]
        diffs = []
        for base in bases:
            d = summary["vs"][base].get(n)
            diffs.append(f"{d['difference']:+.0%} [{d['ci'][0]:+.0%}, {d['ci'][1]:+.0%}]"
                         if d else "")
        print(f"  | {n} | {g['closed']:.0%} | {g['ci'][0]:.0%} to {g['ci'][1]:.0%} | "
              f"{g['mean_s']:.2f} | " + " | ".join(diffs) + " |")


def report(out: Path, plot: Path | None = None) -> None:
    """The table of every setting in `out`, the targets checked, and a plot."""
    docs = sorted((json.loads(p.read_text()) for p in out.glob("*.json")),
                  key=lambda d: (d["setting"]["llm"], d["setting"]["load"],
                                 d["setting"]["cap"], d["setting"]["arrivals"]))
    if not docs:
        raise SystemExit(f"{out}: no settings yet")
    for d in docs:  # from the replicates, so that the summary is this script's
        d["summary"] = summarise(d["runs"], [n for n in d["runs"][0]
                                             if n not in ("replicate", "train_seed")])
    names = list(dict.fromkeys(n for d in docs for n in d["summary"]["gap"]
                               if n not in ("fcfs", "sjf")))  # a setting may lack some
    print("| LLM | load | cap | arrivals | queued | FCFS / SJF mean E2E (s) | " +
          " | ".join(names) + " |")
    print("|---|---:|---:|---|---:|---:|" + "---:|" * len(names))
    for d in docs:
        st, sm = d["setting"], d["summary"]
        cells = [f"{sm['gap'][n]['closed']:.0%} [{sm['gap'][n]['ci'][0]:.0%}, "
                 f"{sm['gap'][n]['ci'][1]:.0%}]" if n in sm["gap"] else "-" for n in names]
        print(f"| {st['llm'].split('-Instruct')[0]} | {st['load']:g} | {st['cap'] or '-'} | "
              f"{st['arrivals']} | {sm['queued']}/{len(d['runs'])} | "
              f"{sm['fcfs_mean_s']:.2f} / {sm['sjf_mean_s']:.2f} | " + " | ".join(cells) + " |")
    print("\npaired: pars minus length and minus lgbm, gap closed [95% CI]")
    for d in docs:
        st, vs = d["setting"], d["summary"]["vs"]
        cells = [f"{b}: {vs[b]['pars']['difference']:+.0%} [{vs[b]['pars']['ci'][0]:+.0%}, "
                 f"{vs[b]['pars']['ci'][1]:+.0%}]" for b in ("length", "lgbm")
                 if b in vs and "pars" in vs[b]]
        print(f"  {_setting(st)}: " + "; ".join(cells))
    print("\nE2E P99 (s), median over replicates")
    for d in docs:
        st, gap = d["setting"], d["summary"]["gap"]
        print(f"  {_setting(st)}: fcfs {gap['fcfs']['p99_s']:.0f}, sjf "
              f"{gap['sjf']['p99_s']:.0f}, " +
              ", ".join(f"{n} {gap[n]['p99_s']:.0f}" for n in names if n in gap))
    variants = [n for n in names if n.startswith("pars") and n not in ("pars", "pars-v1")]
    for base in ("pars", "pars-1"):
        if base not in names or not variants:
            continue
        print(f"\npaired: variants of pars minus {base}, gap closed [95% CI]")
        for d in docs:
            st, vs = d["setting"], d["summary"]["vs"].get(base, {})
            cells = [f"{n}: {vs[n]['difference']:+.0%} [{vs[n]['ci'][0]:+.0%}, "
                     f"{vs[n]['ci'][1]:+.0%}]" for n in variants if n in vs]
            print(f"  {_setting(st)}: " + "; ".join(cells))
    print("\ntargets at load 1.0 (pars >= 80% of the gap; lower CI bound of pars above the "
          "point figure of length and lgbm; paired difference CI above 0):")
    for d in docs:
        st, sm = d["setting"], d["summary"]
        if st["load"] != 1.0 or "pars" not in sm["gap"]:
            continue
        g = sm["gap"]["pars"]
        checks = [f"gap {g['closed']:.0%} {'>=' if g['closed'] >= 0.8 else '<'} 80%"]
        for b in ("length", "lgbm"):
            if b in sm["gap"]:
                above = g["ci"][0] > sm["gap"][b]["closed"]
                paired = sm["vs"][b]["pars"]["ci"][0] > 0
                checks.append(f"vs {b}: CI low {g['ci'][0]:.0%} "
                              f"{'>' if above else '<='} {sm['gap'][b]['closed']:.0%}, "
                              f"paired {'above 0' if paired else 'not above 0'}")
        print(f"  {st['llm'].split('-Instruct')[0]}, cap {st['cap'] or '-'}, "
              f"{st['arrivals']}: " + "; ".join(checks))
    _plot(docs, names, plot or out / "gap-closed.png")


def _setting(st: dict) -> str:
    return (f"{st['llm'].split('-Instruct')[0]}, load {st['load']:g}, cap {st['cap'] or '-'}, "
            f"{st['arrivals']}")


def _label(st: dict) -> str:
    cap = f"cap {st['cap']}" if st["cap"] else "uncapped"
    return f"{st['llm'].split('-')[0]}\n{st['load']:g}x {cap}\n{st['arrivals']}"


def _plot(docs: list[dict], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(docs)), 4.5))
    width = 0.8 / len(names)
    nan = {"closed": math.nan, "ci": [math.nan, math.nan]}  # a policy a setting lacks
    lowest = 0.0
    for k, n in enumerate(names):
        gaps = [d["summary"]["gap"].get(n, nan) for d in docs]
        mid = [g["closed"] * 100 for g in gaps]
        lo = [m - g["ci"][0] * 100 for m, g in zip(mid, gaps, strict=True)]
        hi = [g["ci"][1] * 100 - m for m, g in zip(mid, gaps, strict=True)]
        x = np.arange(len(docs)) + (k - (len(names) - 1) / 2) * width
        ax.bar(x, mid, width, label=n, yerr=[lo, hi], capsize=2)
        lowest = np.nanmin([lowest] + [g["ci"][0] * 100 for g in gaps])
    ax.axhline(80, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(docs)))
    ax.set_xticklabels([_label(d["setting"]) for d in docs], fontsize=7)
    ax.set_ylabel("% of FCFS -> oracle-SJF mean-E2E gap closed")
    ax.set_ylim(lowest - 5, 110)
    ax.legend(fontsize=7, ncol=len(names))
    ax.set_title("Gap closed per predictor (95% CI over prompts, draws, arrivals, training seeds)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot in {path}")


if __name__ == "__main__":
    main()
