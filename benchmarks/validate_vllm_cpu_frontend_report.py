"""The tables of benchmarks/validate_vllm_cpu_frontend.sh: the live server's all-at-once runs
at every seat count and the study's runs at many seats, real against llmsim priced by each
fitted profile, and issue 21's targets checked for each.

    python benchmarks/validate_vllm_cpu_frontend_report.py llmsim-out/validate-vllm-cpu-frontend \
        --fits "few=2,4 many=2,4,16" --seqs 32 --repeats 3

Reads OUT/validate-<fit>-<run>/validation.json (`llmsim validate` of OUT/run-<run>.json with
OUT/fitted-<fit>.json) and the CPU accounting beside each all-at-once run (or in OUT/runs/).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TOLERANCE = 0.15  # mean E2E, TTFT and the ceiling: within 15% of real, or inside its spread
GAIN_TOLERANCE = 0.25  # the FCFS -> policy improvement: sign right, magnitude within +-25%
PROCESSES = (("VLLM::Worker", "worker"), ("VLLM::EngineCore", "engine core"),
             ("api_server", "API server"))


def metrics(out: Path, fit: str, run: str) -> dict:
    return json.loads((out / f"validate-{fit}-{run}" / "validation.json").read_text())["metrics"]


def within(sim: float, reals: list[float]) -> bool:
    mean = float(np.mean(reals))
    return abs(sim / mean - 1) <= TOLERANCE or min(reals) <= sim <= max(reals)


def pct(sim: float, real: float) -> str:
    return f"{100 * (sim / real - 1):+.0f}%"


def gain_interval(fcfs: list[float], policy: list[float], resamples: int = 10_000,
                  seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the gain 1 - mean(policy) / mean(fcfs), resampling the run
    pairs (a pair's two runs were made one after the other, so they share the server's
    drift)."""
    f, p = np.asarray(fcfs), np.asarray(policy)
    idx = np.random.default_rng(seed).integers(0, len(f), (resamples, len(f)))
    gains = 1 - p[idx].mean(axis=1) / f[idx].mean(axis=1)
    lo, hi = np.percentile(gains, [2.5, 97.5])
    return float(lo), float(hi)


def adjusted_gain(e2e: dict[str, list[float]], req_s: dict[str, list[float]],
                  resamples: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """The FCFS -> SJF gain in mean E2E at equal throughput, with its 95% bootstrap interval
    over run pairs: a least-squares fit E2E = a + b x req/s + c x [sjf] over every run, the
    gain -c / mean FCFS E2E. Overloaded, a run's E2E follows the throughput the server
    happened to reach; this takes that out (after the fact: throughput is partly an outcome
    of the policy too)."""
    y = np.array(e2e["fcfs"] + e2e["sjf"])
    x = np.column_stack([np.ones(len(y)), req_s["fcfs"] + req_s["sjf"],
                         [0.0] * len(e2e["fcfs"]) + [1.0] * len(e2e["sjf"])])
    n = len(e2e["fcfs"])

    def gain(rows: np.ndarray) -> float:
        c, _, rank, _ = np.linalg.lstsq(x[rows], y[rows], rcond=None)
        if rank < 3:  # a resample of too few distinct pairs does not identify the fit
            return np.nan
        return float(-c[2] / y[rows[:len(rows) // 2]].mean())

    idx = np.random.default_rng(seed).integers(0, n, (resamples, n))
    gains = [gain(np.concatenate([i, i + n])) for i in idx]
    lo, hi = np.nanpercentile(gains, [2.5, 97.5])
    return gain(np.arange(2 * n)), float(lo), float(hi)


def cpu_shares(path: Path) -> dict[str, float]:
    """Each of the server's processes, and the client, as a share of the run's wall time."""
    d = json.loads(path.read_text())
    shares = {name: 0.0 for _, name in PROCESSES}
    for t in d["threads"]:
        for key, name in PROCESSES:
            if key in t["process"] or key in t["thread"]:
                shares[name] += t["cpu_s"] / d["wall_s"]
    shares["client"] = d["client_cpu_s"] / d["wall_s"]
    return shares


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--fits", default="few=2,4 many=2,4,16", help="the fitted profiles to "
                    "compare, each as name=the seats of the all-at-once runs it was fitted to")
    ap.add_argument("--seqs", default="32", help="seats of the study's runs")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = args.out
    fitted = {name: seats.split(",") for name, seats in
              (spec.split("=", 1) for spec in args.fits.split())}
    fits = list(fitted)
    # the seat counts validated (the run files may have moved to runs/, as in docs/results)
    prefix = f"validate-{fits[0]}-saturated-"
    seats_all = sorted(int(p.name[len(prefix):]) for p in out.glob(prefix + "*")
                       if p.name[len(prefix):].isdigit())

    print("all requests at once, fcfs (req/s; TPOT mean): real / llmsim priced by each fit")
    head = " | ".join(f"{f}: req/s | {f}: TPOT" for f in fits)
    print(f"| seats | fitted by | real req/s | real TPOT | {head} |")
    print("|---:|---|---:|---:|" + "---:|---:|" * len(fits))
    runs = [f"saturated-{s}" for s in seats_all] + [f"saturated-{args.seqs}-after"]
    for run in runs:
        if not (out / f"validate-{fits[0]}-{run}").exists():
            continue
        seats = run.split("-")[1]
        m = {f: metrics(out, f, run) for f in fits}
        real = m[fits[0]]["throughput"]["real"]["requests_per_s"]
        tpot = m[fits[0]]["tpot"]["real"]["mean"]
        cells = []
        for f in fits:
            sim = m[f]["throughput"]["sim"]["requests_per_s"]
            sim_tpot = m[f]["tpot"]["sim"]["mean"]
            cells += [f"{sim:.2f} ({pct(sim, real)})", f"{1e3 * sim_tpot:.1f} ms"]
        where = ", ".join(f for f in fits if seats in fitted[f] and not run.endswith("after"))
        where = where or "none"
        label = f"{seats} (after the study)" if run.endswith("after") else seats
        print(f"| {label} | {where} | {real:.2f} | {1e3 * tpot:.1f} ms | " + " | ".join(cells)
              + " |")

    print("\nCPU while each all-at-once run lasted, share of its wall time (2 cores in all)")
    print("| seats | worker (core 0) | engine core | API server | client | cores busy |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s in seats_all:
        path = out / f"run-saturated-{s}.cpu.json"
        if not path.exists():
            path = out / "runs" / path.name
        if path.exists():
            sh = cpu_shares(path)
            cells = [f"{100 * sh[n]:.0f}%" for n in ("worker", "engine core", "API server",
                                                    "client")]
            print(f"| {s} | " + " | ".join(cells) + f" | {sum(sh.values()):.2f} |")

    print(f"\nthe study: {args.seqs} seats, fcfs and oracle sjf, {args.repeats} runs each "
          "(real: mean (min-max); llmsim: mean, error against the real mean)")
    print("| policy | metric | real | " + " | ".join(fits) + " |")
    print("|---|---|---:|" + "---:|" * len(fits))
    verdicts: dict[str, list[tuple[str, bool]]] = {f: [] for f in fits}
    e2e, req_s = {}, {}
    for policy in ("fcfs", "sjf"):
        ms = {f: [metrics(out, f, f"{policy}-{r}") for r in range(1, args.repeats + 1)]
              for f in fits}
        for metric in ("ttft", "e2e", "tpot"):
            real = [m[metric]["real"]["mean"] for m in ms[fits[0]]]
            unit, k = ("ms", 1e3) if metric == "tpot" else ("s", 1.0)
            cells = []
            for f in fits:
                sim = float(np.mean([m[metric]["sim"]["mean"] for m in ms[f]]))
                cells.append(f"{k * sim:.2f} {unit} ({pct(sim, np.mean(real))})")
                if metric != "tpot":
                    verdicts[f].append((f"{policy} {metric.upper()} mean", within(sim, real)))
                if metric == "e2e":
                    e2e[f, policy] = (real, sim)
            print(f"| {policy} | {metric.upper()} mean | {k * np.mean(real):.2f} {unit} "
                  f"({k * min(real):.2f}-{k * max(real):.2f}) | " + " | ".join(cells) + " |")
        real = [m["throughput"]["real"]["requests_per_s"] for m in ms[fits[0]]]
        cells = [f"{np.mean([m['throughput']['sim']['requests_per_s'] for m in ms[f]]):.2f}"
                 for f in fits]
        print(f"| {policy} | req/s | {np.mean(real):.2f} | " + " | ".join(cells) + " |")
        req_s[policy] = real
    print()
    for f in fits:
        (real_f, sim_f), (real_s, sim_s) = e2e[f, "fcfs"], e2e[f, "sjf"]
        real_gain, sim_gain = 1 - np.mean(real_s) / np.mean(real_f), 1 - sim_s / sim_f
        pairs = [1 - s / c for c, s in zip(real_f, real_s, strict=True)]
        ok = np.sign(sim_gain) == np.sign(real_gain) and \
            abs(sim_gain - real_gain) <= GAIN_TOLERANCE * abs(real_gain)
        verdicts[f].append(("fcfs->sjf gain", bool(ok)))
        lo, hi = gain_interval(real_f, real_s)
        where = "inside" if lo <= sim_gain <= hi else "outside"
        print(f"FCFS -> SJF mean E2E, fit {f}: real {100 * real_gain:+.1f}% (95% CI over run "
              f"pairs {100 * lo:+.0f}% to {100 * hi:+.0f}%; run pairs "
              + ", ".join(f"{100 * g:+.0f}%" for g in pairs)
              + f"), llmsim {100 * sim_gain:+.1f}% ({where} the interval)")
        ceiling = metrics(out, f, f"saturated-{args.seqs}")["throughput"]
        c_real, c_sim = ceiling["real"]["requests_per_s"], ceiling["sim"]["requests_per_s"]
        verdicts[f].insert(0, (f"ceiling at {args.seqs} seats",
                               abs(c_sim / c_real - 1) <= TOLERANCE))
    real_e2e = {policy: e2e[fits[0], policy][0] for policy in ("fcfs", "sjf")}
    if args.repeats > 2:
        g, lo, hi = adjusted_gain(real_e2e, req_s)
        print(f"FCFS -> SJF mean E2E at equal throughput (real, after the fact): "
              f"{100 * g:+.1f}% (95% CI {100 * lo:+.0f}% to {100 * hi:+.0f}%)")
    print("\ntargets (mean E2E and TTFT within 15% or inside the real spread; the ceiling "
          "within 15%; the gain's sign right and within +-25% of the real one):")
    for f in fits:
        print(f"  fit {f}: " + "; ".join(f"{n} {'met' if ok else 'NOT met'}"
                                         for n, ok in verdicts[f]))


if __name__ == "__main__":
    main()
