"""The table of benchmarks/validate_vllm_cpu_study.sh: real vs simulated per policy and load,
the throughput ceiling, the FCFS -> SJF improvement, and issue 21's targets checked.

    python benchmarks/validate_vllm_cpu_report.py llmsim-out/validate-vllm-cpu-study \
        --loads "0.8 1.0" --repeats 3 --saturate "1 2" --seqs 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TOLERANCE = 0.15  # mean E2E, TTFT and the ceiling: within 15% of real, or inside its spread
GAIN_TOLERANCE = 0.25  # the FCFS -> policy improvement: sign right, magnitude within +-25%


def metrics(folder: Path) -> dict:
    return json.loads((folder / "validation.json").read_text())["metrics"]


def within(sim: float, reals: list[float]) -> bool:
    mean = float(np.mean(reals))
    return abs(sim / mean - 1) <= TOLERANCE or min(reals) <= sim <= max(reals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--loads", default="0.8 1.0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--policies", default="fcfs sjf")
    ap.add_argument("--saturate", default="1 2", help="seats of the all-at-once runs fitted")
    ap.add_argument("--seqs", default="4", help="seats of the study's runs")
    args = ap.parse_args()
    out, loads, policies = args.out, args.loads.split(), args.policies.split()

    print("all requests at once, fcfs: real / llmsim")
    print("| seats | in the fit | req/s | TPOT mean | TTFT mean | E2E mean |")
    print("|---:|---|---:|---:|---:|---:|")
    for seats in dict.fromkeys([*args.saturate.split(), args.seqs]):
        m = metrics(out / f"validate-saturated-{seats}")
        rate = m["throughput"]
        print(f"| {seats} | {'yes' if seats in args.saturate.split() else 'no'} | "
              f"{rate['real']['requests_per_s']:.2f} / {rate['sim']['requests_per_s']:.2f} | "
              f"{1e3 * m['tpot']['real']['mean']:.2f} / {1e3 * m['tpot']['sim']['mean']:.2f} ms | "
              f"{m['ttft']['real']['mean']:.1f} / {m['ttft']['sim']['mean']:.1f} s | "
              f"{m['e2e']['real']['mean']:.1f} / {m['e2e']['sim']['mean']:.1f} s |")
    rate = metrics(out / f"validate-saturated-{args.seqs}")["throughput"]
    real_c, sim_c = rate["real"]["requests_per_s"], rate["sim"]["requests_per_s"]
    ceiling_ok = abs(sim_c / real_c - 1) <= TOLERANCE
    print(f"\nthroughput ceiling at {args.seqs} seats: real {real_c:.2f} req/s, llmsim "
          f"{sim_c:.2f} req/s ({100 * (sim_c / real_c - 1):+.1f}%)\n")
    print("| policy | load | TTFT mean real (min-max) | sim | err | E2E mean real (min-max) "
          "| sim | err | E2E P90 real | sim | TPOT mean real | sim | req/s real | sim |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    e2e: dict[tuple[str, str], tuple[list[float], float]] = {}
    verdicts = [(f"throughput ceiling at {args.seqs} seats (within 15%)", ceiling_ok)]
    for policy in policies:
        for load in loads:
            runs = [metrics(out / f"validate-{policy}-{load}-{r}")
                    for r in range(1, args.repeats + 1)]

            def side(metric, stat, which, runs=runs):
                return [m[metric][which][stat] for m in runs]

            cells = []
            for metric in ("ttft", "e2e"):
                real, sim = side(metric, "mean", "real"), np.mean(side(metric, "mean", "sim"))
                err = sim / np.mean(real) - 1
                cells += [f"{np.mean(real):.2f} s ({min(real):.2f}-{max(real):.2f})",
                          f"{sim:.2f} s", f"{100 * err:+.0f}%"]
                verdicts.append((f"{policy} {load}x {metric.upper()} mean", within(sim, real)))
                if metric == "e2e":
                    e2e[policy, load] = (real, sim)
            cells += [f"{np.mean(side('e2e', 'p90', 'real')):.2f} s",
                      f"{np.mean(side('e2e', 'p90', 'sim')):.2f} s",
                      f"{1e3 * np.mean(side('tpot', 'mean', 'real')):.1f} ms",
                      f"{1e3 * np.mean(side('tpot', 'mean', 'sim')):.1f} ms",
                      f"{np.mean([m['throughput']['real']['requests_per_s'] for m in runs]):.2f}",
                      f"{np.mean([m['throughput']['sim']['requests_per_s'] for m in runs]):.2f}"]
            print(f"| {policy} | {load} | " + " | ".join(cells) + " |")
    print()
    for policy in policies[1:]:
        for load in loads:
            (real_f, sim_f), (real_p, sim_p) = e2e["fcfs", load], e2e[policy, load]
            real_gain = 1 - np.mean(real_p) / np.mean(real_f)
            sim_gain = 1 - sim_p / sim_f
            # each pairing of a fcfs run with a policy run: the spread of the real gain
            pairs = [1 - p / f for f in real_f for p in real_p]
            ok = np.sign(sim_gain) == np.sign(real_gain) and \
                abs(sim_gain - real_gain) <= GAIN_TOLERANCE * abs(real_gain)
            verdicts.append((f"fcfs->{policy} gain at {load}x", bool(ok)))
            print(f"FCFS -> {policy} mean E2E gain at {load}x: real {100 * real_gain:+.1f}% "
                  f"(pairs {100 * min(pairs):+.0f}% to {100 * max(pairs):+.0f}%), "
                  f"llmsim {100 * sim_gain:+.1f}%")
    print("\ntargets (mean E2E and TTFT within 15% or inside the real spread; gain's sign "
          "right and within +-25% of the real one):")
    for name, ok in verdicts:
        print(f"  {name}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
