"""The tables of benchmarks/validate_vllm_cpu_prefix.sh: vLLM's prefix cache against
llmsim's on the same requests, per run (hit rate, TTFT, E2E, throughput), and what turning
the cache on bought, real and simulated, with issue 21's tolerances checked.

    python benchmarks/validate_vllm_cpu_prefix_report.py llmsim-out/validate-vllm-cpu-prefix \
        --repeats 3

Reads OUT/validate-<run>/validation.json (`llmsim validate` of OUT/run-<run>.json, which
records llmsim's hit rate) and vLLM's prefix-cache counters read before and after each run
(OUT/metrics-<run>-before.txt, -after.txt: Prometheus lines of /metrics).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

TOLERANCE = 0.15  # mean E2E and TTFT: within 15% of real, or inside its spread
GAIN_TOLERANCE = 0.25  # the improvement: sign right, magnitude within +-25% of the real one
COUNTER = re.compile(r"^vllm:prefix_cache_(hits|queries)_total\{[^}]*\}\s+([0-9.eE+-]+)")


def counters(path: Path) -> dict[str, float]:
    """vLLM's prefix-cache counters (tokens) in a scrape of /metrics, summed over engines."""
    out = {"hits": 0.0, "queries": 0.0}
    for line in path.read_text().splitlines():
        m = COUNTER.match(line)
        if m:
            out[m.group(1)] += float(m.group(2))
    return out


def real_hit_rate(out: Path, run: str) -> float:
    before = counters(out / f"metrics-{run}-before.txt")
    after = counters(out / f"metrics-{run}-after.txt")
    queries = after["queries"] - before["queries"]
    return (after["hits"] - before["hits"]) / queries if queries > 0 else float("nan")


def load(out: Path, run: str) -> dict:
    return json.loads((out / f"validate-{run}" / "validation.json").read_text())


def within(sim: float, reals: list[float]) -> bool:
    mean = float(np.mean(reals))
    return abs(sim / mean - 1) <= TOLERANCE or min(reals) <= sim <= max(reals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out, reps = args.out, range(1, args.repeats + 1)

    print("| run | vLLM hit rate | llmsim | req/s real | llmsim | TTFT mean real | llmsim "
          "| E2E mean real | llmsim |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cache in ("off", "on"):
        for run in (f"{cache}-saturated", *(f"{cache}-{r}" for r in reps)):
            v = load(out, run)
            m = v["metrics"]
            sim_hits = v["config"].get("sim_prefix_hit_rate") or 0.0
            hits = real_hit_rate(out, run) if cache == "on" else 0.0
            rate, ttft, e2e = m["throughput"], m["ttft"], m["e2e"]
            print(f"| {run} | {100 * hits:.1f}% | {100 * sim_hits:.1f}% | "
                  f"{rate['real']['requests_per_s']:.2f} | {rate['sim']['requests_per_s']:.2f} | "
                  f"{ttft['real']['mean']:.3f} s | {ttft['sim']['mean']:.3f} s | "
                  f"{e2e['real']['mean']:.3f} s | {e2e['sim']['mean']:.3f} s |")

    print(f"\nthe study's runs ({args.repeats} per setting), real: mean (min-max); llmsim: mean "
          "and error")
    print("| cache | metric | real | llmsim |")
    print("|---|---|---:|---:|")
    means: dict[tuple[str, str, str], float] = {}
    verdicts = []
    for cache in ("off", "on"):
        ms = [load(out, f"{cache}-{r}")["metrics"] for r in reps]
        for metric in ("ttft", "e2e"):
            real = [m[metric]["real"]["mean"] for m in ms]
            sim = float(np.mean([m[metric]["sim"]["mean"] for m in ms]))
            means[cache, metric, "real"], means[cache, metric, "sim"] = float(np.mean(real)), sim
            verdicts.append((f"cache {cache}: {metric.upper()} mean", within(sim, real)))
            print(f"| {cache} | {metric.upper()} mean | {np.mean(real):.3f} s "
                  f"({min(real):.3f}-{max(real):.3f}) | {sim:.3f} s "
                  f"({100 * (sim / np.mean(real) - 1):+.0f}%) |")
    print()
    for metric in ("ttft", "e2e"):
        gain = {side: 1 - means["on", metric, side] / means["off", metric, side]
                for side in ("real", "sim")}
        ok = np.sign(gain["sim"]) == np.sign(gain["real"]) and \
            abs(gain["sim"] - gain["real"]) <= GAIN_TOLERANCE * abs(gain["real"])
        verdicts.append((f"cache off -> on, {metric.upper()} mean gain", bool(ok)))
        print(f"cache off -> on, mean {metric.upper()}: real {100 * gain['real']:+.1f}%, "
              f"llmsim {100 * gain['sim']:+.1f}% (improvement: + is faster)")
    sat = {c: load(out, f"{c}-saturated")["metrics"]["throughput"] for c in ("off", "on")}
    for side in ("real", "sim"):
        gain = sat["on"][side]["requests_per_s"] / sat["off"][side]["requests_per_s"] - 1
        print(f"cache off -> on, all at once, req/s, {side}: {100 * gain:+.1f}%")
    print("\ntargets (mean E2E and TTFT within 15% or inside the real spread; the gain's sign "
          "right and within +-25% of the real one):")
    for name, ok in verdicts:
        print(f"  {name}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
