"""How fast and how lean is workload synthesis? (the "ten million requests" target)

Synthesises N requests (default 10 million) from the CASTILLO prompt pool of one model
(real prompt lengths, each request's output one of its prompt's 10 real generations) with
gamma arrivals (vLLM's --burstiness 0.5) at 100 req/s. Each run is a fresh process, so its
peak RSS (resource.getrusage ru_maxrss) is its own; the figures are medians over the runs.
Loading the pool (parsing 67,565 JSON lines) is timed apart from synthesis itself.

    python benchmarks/trace_synthesis.py                        # 10M, 3 runs
    python benchmarks/trace_synthesis.py PATH/TO/castillo --requests 1000000 --repeats 5

The CASTILLO folder: the argument, else $LLMSIM_SHARED_DATA/castillo, else
../shared/data/castillo beside the repository.
Targets: 10M requests in under 30 s and under 2 GB peak RSS.
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

REPO = Path(__file__).resolve().parents[1]
MODEL = "meta-llama--Llama-3.1-8B-Instruct"
RATE, BURSTINESS = 100.0, 0.5


def default_pool_path() -> Path:
    shared = os.environ.get("LLMSIM_SHARED_DATA")
    return (Path(shared) if shared else REPO.parent / "shared" / "data") / "castillo"


def worker(path: Path, n: int, seed: int) -> None:
    import numpy as np

    from llmsim.traces import arrivals
    from llmsim.traces.castillo import load_castillo_pool
    from llmsim.traces.synth import synthesize

    t0 = time.perf_counter()
    pool = load_castillo_pool(path, model=MODEL)
    t1 = time.perf_counter()
    w = synthesize(n, pool, arrivals.Gamma(RATE, BURSTINESS), np.random.default_rng(seed))
    t2 = time.perf_counter()
    assert len(w) == n and w.arrival[-1] > 0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({
        "requests": n, "pool_prompts": len(pool), "load_pool_s": t1 - t0,
        "synthesize_s": t2 - t1, "total_s": t2 - t0, "peak_rss_mb": peak_mb,
        "mean_output": float(w.output_tokens.mean()), "span_s": float(w.arrival[-1]),
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", type=Path, default=None,
                    help="CASTILLO folder (default: $LLMSIM_SHARED_DATA/castillo or "
                         "../shared/data/castillo)")
    ap.add_argument("--requests", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    path = args.path or default_pool_path()
    if args.worker:
        worker(path, args.requests, args.seed)
        return
    if not path.exists():
        sys.exit(f"no CASTILLO data at {path}: pass the folder as the first argument")
    runs = []
    for i in range(args.repeats):
        out = subprocess.run(
            [sys.executable, __file__, str(path), "--requests", str(args.requests),
             "--seed", str(args.seed + i), "--worker"],
            check=True, capture_output=True, text=True, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"run {i + 1}: {json.dumps(runs[-1])}", flush=True)
    med = {k: statistics.median(r[k] for r in runs)
           for k in ("load_pool_s", "synthesize_s", "total_s", "peak_rss_mb")}
    print(f"\n{args.requests:,} requests from {runs[0]['pool_prompts']:,} CASTILLO prompts "
          f"({MODEL}), gamma arrivals, median of {len(runs)} runs:")
    print(f"  load pool {med['load_pool_s']:.2f} s, synthesise {med['synthesize_s']:.2f} s, "
          f"total {med['total_s']:.2f} s; peak RSS {med['peak_rss_mb']:.0f} MB")
    ok = med["total_s"] < 30 and med["peak_rss_mb"] < 2048
    print(f"  target (< 30 s, < 2 GB): {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
