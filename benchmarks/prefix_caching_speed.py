"""The fast simulator's speed with prefix caching on against off, on Mooncake's whole
conversation trace, measured so that this box's noise shows: off and on alternate
`--runs` times in each process (its medians), and with `--tree` the processes alternate
between this checkout and another llmsim (built in place) for `--rounds` rounds.

    python benchmarks/prefix_caching_speed.py                       # this checkout
    python benchmarks/prefix_caching_speed.py --tree ../base --rounds 5

CPU seconds (`time.process_time`) of `simulate` on the whole trace (12,031 requests),
Llama-3-8B on 8 H100 replicas, least-tokens, FCFS, after one warm-up of 300 requests: the
deployment `benchmarks/prefix_caching.py` times, without its table. Prints each process's
medians and, per tree, the median of them; the issue's target is on/off within 1.5x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLMSIM_SHARED_DATA", REPO.parent / "shared" / "data"))

RUN = """
import statistics, sys, time
from llmsim import Deployment, EngineConfig, get_policy, simulate
from llmsim.engine import compiled
from llmsim.traces.loaders import load_trace
w = load_trace(sys.argv[1] + "/mooncake/conversation_trace.jsonl")
def deployment(caching):
    return Deployment(model="llama-3-8b", gpu="h100", num_replicas=8, router="least-tokens",
                      engine=EngineConfig(enable_prefix_caching=caching))
simulate(w.head(300), get_policy("fcfs"), deployment(True))
runs = {False: [], True: []}
for _ in range(int(sys.argv[2])):
    for caching in (False, True):
        t = time.process_time()
        simulate(w, get_policy("fcfs"), deployment(caching))
        runs[caching].append(time.process_time() - t)
print(statistics.median(runs[False]), statistics.median(runs[True]), compiled())
"""


def measure(tree: Path, runs: int, data: Path) -> tuple[float, float]:
    """(off, on): one process's median CPU seconds, llmsim imported from `tree`."""
    # (cwd: `python -c` puts the working directory first on the path, before PYTHONPATH)
    out = subprocess.run([sys.executable, "-c", RUN, str(data), str(runs)], cwd=tree,
                         env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                         text=True, check=False)
    if out.returncode:
        sys.exit(f"error: the run in {tree} failed:\n{out.stderr[-2000:]}")
    off, on, compiled = out.stdout.split()
    if compiled != "True":  # a stale build runs the sources at half the speed
        sys.exit(f"error: the engine in {tree} is not compiled (or stale): build it in place")
    return float(off), float(on)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="off/on pairs per process")
    ap.add_argument("--rounds", type=int, default=3, help="processes per tree")
    ap.add_argument("--tree", type=Path, help="another llmsim checkout to alternate with")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    if not (args.data / "mooncake" / "conversation_trace.jsonl").exists():
        sys.exit(f"error: no Mooncake trace under {args.data} (set LLMSIM_SHARED_DATA)")
    trees = [REPO] + ([args.tree.resolve()] if args.tree else [])
    got: dict[Path, list[tuple[float, float]]] = {t: [] for t in trees}
    for _ in range(args.rounds):
        for tree in trees:
            off, on = measure(tree, args.runs, args.data)
            got[tree].append((off, on))
            print(f"{tree}: off {off:.3f} s, on {on:.3f} s, on/off {on / off:.2f}x", flush=True)
    for tree, pairs in got.items():
        off = statistics.median(p[0] for p in pairs)
        on = statistics.median(p[1] for p in pairs)
        ratio = statistics.median(p[1] / p[0] for p in pairs)
        print(f"median over {len(pairs)} processes, {tree}: caching off {off:.3f} s, "
              f"on {on:.3f} s, on/off {ratio:.2f}x")


if __name__ == "__main__":
    main()
