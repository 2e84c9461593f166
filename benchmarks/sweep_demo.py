"""The sweep of issue 8: 4 policies (fcfs, sjf, srpt, mlfq) x 8 loads (0.5..1.2 of measured
capacity) x 3 seeds = 96 simulations of the bundled 3,000-request workload
(examples/sweep.toml), run

1. locally with a process pool,
2. on a local Ray instance (started here, its start timed apart),
3. killed (SIGKILL) midway in a subprocess and resumed,

printing the wall time of each and whether all three give identical rows; then renders the
report of the local run.

    python benchmarks/sweep_demo.py                 # jobs = CPUs; output in llmsim-out/
    python benchmarks/sweep_demo.py --jobs 8 --no-ray
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "sweep.toml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("llmsim-out") / "sweep-demo")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    ap.add_argument("--kill-after", type=int, default=20,
                    help="points the killed run finishes before SIGKILL")
    args = ap.parse_args()

    from llmsim.sweep import load_grid, run_sweep
    from llmsim.sweep.report import report

    grid = load_grid(CONFIG)
    n = len(grid.points())
    print(f"grid: {len(grid.policies)} policies x {len(grid.loads)} loads x "
          f"{len(grid.seeds)} seeds = {n} points; {grid.workload().source}")
    print(f"machine: {os.cpu_count()} CPUs; jobs={args.jobs}")
    for name in ("local", "ray", "killed"):
        shutil.rmtree(args.out / name, ignore_errors=True)

    t = time.perf_counter()
    local = run_sweep(grid, args.out / "local", jobs=args.jobs)
    local_s = time.perf_counter() - t
    print(f"local process pool ({args.jobs} jobs): {local_s:.1f} s wall, "
          f"{local.computed} points")
    reference = rows(local.table)

    if not args.no_ray:
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        start_s = time.perf_counter() - t
        try:
            t = time.perf_counter()
            on_ray = run_sweep(grid, args.out / "ray", ray="local")
            ray_s = time.perf_counter() - t
        finally:
            ray.shutdown()
        print(f"local Ray ({args.jobs} CPUs): {ray_s:.1f} s wall (+ {start_s:.1f} s to start "
              f"Ray), {on_ray.computed} points; identical to local: "
              f"{rows(on_ray.table) == reference}")

    killed = args.out / "killed"
    script = ("import sys; from llmsim.sweep import load_grid, run_sweep; "
              f"run_sweep(load_grid({str(CONFIG)!r}), {str(killed)!r}, jobs={args.jobs}, "
              "progress=False)")
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", script])
    while len(list(killed.glob("points/*.json"))) < args.kill_after and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first_s = time.perf_counter() - t
    before = {p.name: p.stat().st_mtime_ns for p in killed.glob("points/*.json")}
    t = time.perf_counter()
    resumed = run_sweep(grid, killed, jobs=args.jobs)
    resume_s = time.perf_counter() - t
    untouched = all((killed / "points" / p).stat().st_mtime_ns == m for p, m in before.items())
    print(f"killed after {first_s:.1f} s with {len(before)} of {n} points saved; the rerun "
          f"skipped {resumed.skipped}, simulated {resumed.computed} in {resume_s:.1f} s; saved "
          f"points untouched: {untouched}; identical to local: {rows(resumed.table) == reference}")

    t = time.perf_counter()
    files = report(args.out / "local")
    print(f"report: {files.html} and {len(files.figures)} PNGs in "
          f"{time.perf_counter() - t:.1f} s")


def rows(table) -> str:
    return json.dumps(table.to_pylist(), sort_keys=True)


if __name__ == "__main__":
    main()
