"""Prefix caching's cost in instructions, not seconds: a measure this noisy box cannot move.

CPU seconds here vary by 20-30% between identical runs, more than most optimisations of the
caching pool change them. valgrind's callgrind counts the instructions a run executes,
which repeats to within a fraction of a percent: each simulation is run under it once set
up only (imports, workload) and once simulated, and the difference is what simulating
cost. Ratios of instruction counts are not ratios of seconds (NumPy's memory-bound work
costs more per instruction than the interpreter loop), but an instruction saved is real.

    python benchmarks/instructions.py                         # Mooncake, 3,000 requests
    python benchmarks/instructions.py --sessions 500          # synthetic sessions
    python benchmarks/instructions.py --tree ../old-checkout  # another llmsim

Needs `valgrind` on PATH; about 1-2 minutes per count (runs are ~50x slower under it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLMSIM_SHARED_DATA", REPO.parent / "shared" / "data"))

RUN = """
import sys
import numpy as np
from llmsim import Deployment, EngineConfig, get_policy, simulate
mode, requests, sessions, replicas, data = sys.argv[1:6]
if int(sessions):
    from llmsim.traces.sessions import SessionSpec, synthesize_sessions
    w = synthesize_sessions(SessionSpec(sessions=int(sessions)), np.random.default_rng(0))
else:
    from llmsim.traces.loaders import load_trace
    w = load_trace(data + "/mooncake/conversation_trace.jsonl").head(int(requests))
dep = Deployment(model="llama-3-8b", gpu="h100", num_replicas=int(replicas),
                 router="least-tokens", engine=EngineConfig(enable_prefix_caching=mode == "on"))
if mode != "setup":
    simulate(w, get_policy("fcfs"), dep)
"""


def count(tree: Path, mode: str, args: argparse.Namespace) -> int:
    """Instructions executed by one run of RUN (callgrind's total)."""
    # one BLAS thread: OpenBLAS's idle threads spin for as long as the machine lets them,
    # which moved the counts by up to 30M instructions between identical runs
    env = {**os.environ, "PYTHONPATH": str(tree), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         "-c", RUN, mode, str(args.requests), str(args.sessions), str(args.replicas),
         str(args.data)], env=env, cwd=tree, capture_output=True, text=True, check=False)
    # (cwd: `python -c` puts the working directory first on the path, before PYTHONPATH)
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split()[-1])
    sys.exit(f"error: valgrind did not report a count:\n{out.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000, help="first N Mooncake requests")
    ap.add_argument("--replicas", type=int, default=0, help="default: 8 (Mooncake), 2 (sessions)")
    ap.add_argument("--sessions", type=int, default=0, help="synthetic sessions instead")
    ap.add_argument("--tree", type=Path, default=REPO, help="the llmsim checkout to count")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    args.tree, args.data = args.tree.resolve(), args.data.resolve()
    args.replicas = args.replicas or (2 if args.sessions else 8)
    if shutil.which("valgrind") is None:
        sys.exit("error: valgrind is not on PATH")
    if not args.sessions and not (args.data / "mooncake" / "conversation_trace.jsonl").exists():
        sys.exit(f"error: no Mooncake trace under {args.data} (set LLMSIM_SHARED_DATA)")
    what = (f"{args.sessions:,} sessions" if args.sessions else
            f"{args.requests:,} Mooncake requests") + f", {args.replicas} replicas, FCFS"
    print(f"{what}; llmsim at {args.tree}")
    setup = count(args.tree, "setup", args)
    off = count(args.tree, "off", args) - setup
    on = count(args.tree, "on", args) - setup
    print(f"simulating: caching off {off / 1e9:.3f} G instructions, on {on / 1e9:.3f} G: "
          f"on/off = {on / off:.2f}x")


if __name__ == "__main__":
    main()
