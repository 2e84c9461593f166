"""How far are llmsim's latencies from vLLM's, with vLLM's default async scheduling?

llmsim mirrors vLLM's synchronous V1 scheduler iteration by iteration
(tests/test_vllm_differential.py). `vllm serve` runs the AsyncScheduler by default: it
schedules batch k+1 while batch k runs, so a request arriving while the engine is busy
joins one iteration later, and a finished request's seat and blocks come back one
iteration later. This script prices vLLM's real scheduler (both modes, on the CPU, no
model) with llmsim's cost model on the bundled workload and prints the latencies of each
beside llmsim's own simulation; llmsim must equal the synchronous column exactly.

Needs the vLLM venv (docs/vllm.md):
    .venv-vllm/bin/python benchmarks/vllm_async_gap.py               # FCFS and SJF at 0.5, 0.9
    .venv-vllm/bin/python benchmarks/vllm_async_gap.py --requests 1000 --loads 0.9
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llmsim import simulate  # noqa: E402
from llmsim.capacity import capacity_rps  # noqa: E402
from llmsim.simulate import Deployment  # noqa: E402
from llmsim.traces.arrivals import scale_to_load  # noqa: E402
from llmsim.traces.default import default_workload  # noqa: E402
from llmsim.traces.workload import Workload  # noqa: E402
from tests.vllm_diff import Job, Setup, llmsim_policy, vllm_timeline  # noqa: E402
from tests.vllm_scheduler import tiny_model_config  # noqa: E402


def stats(arrival: np.ndarray, first: np.ndarray, finish: np.ndarray, output: np.ndarray):
    ttft, e2e = (first - arrival) * 1e3, finish - arrival
    many = output > 1
    tpot = (finish[many] - first[many]) / (output[many] - 1) * 1e3
    return {"TTFT mean ms": ttft.mean(), "TTFT p90 ms": np.percentile(ttft, 90),
            "TPOT mean ms": tpot.mean(), "E2E mean s": e2e.mean(),
            "E2E p90 s": np.percentile(e2e, 90)}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--loads", default="0.5,0.9")
    ap.add_argument("--policies", default="fcfs,sjf")
    args = ap.parse_args(argv)
    deployment = Deployment()  # llama-3-8b, one H100, roofline costs, vLLM's defaults
    cost = deployment.cost_model()
    e = deployment.engine
    base = default_workload()
    n = min(args.requests, len(base))
    capacity = capacity_rps(base, deployment)
    # vLLM keeps one block of its pool as the null block: llmsim's blocks are the usable ones.
    setup_of = {"fcfs": "fcfs", "sjf": "priority"}
    print(f"{n} requests of the bundled workload; {deployment.model} on {deployment.gpu}, "
          f"{cost.label}; capacity {capacity:.2f} req/s; max_num_seqs {e.max_num_seqs}, "
          f"max_num_batched_tokens {e.max_num_batched_tokens}, "
          f"{deployment.num_gpu_blocks()} KV blocks of {e.block_size}")
    model_config = tiny_model_config(Path(tempfile.mkdtemp()), max_model_len=1 << 16)
    for load in (float(x) for x in args.loads.split(",")):
        arrival = scale_to_load(base.arrival[:n], load, capacity)
        w = Workload(arrival, base.prompt_tokens[:n], base.output_tokens[:n], source="bench")
        for name in args.policies.split(","):
            setup = Setup(setup_of[name], e.max_num_seqs, e.max_num_batched_tokens,
                          e.block_size, deployment.num_gpu_blocks())
            # sjf: vLLM's integer priority is the oracle output length, llmsim's SJF rank.
            jobs = [Job(i, float(a), int(p), int(o), int(o) if name == "sjf" else 0)
                    for i, (a, p, o) in enumerate(zip(w.arrival, w.prompt_tokens,
                                                      w.output_tokens, strict=True))]
            start = time.perf_counter()
            sim = simulate(w, llmsim_policy(setup, jobs), deployment, cost=cost).records
            t_sim = time.perf_counter() - start
            rows = {"llmsim": (sim.first_token, sim.finish, t_sim)}
            for mode, flag in (("vLLM sync", False), ("vLLM async", True)):
                start = time.perf_counter()
                t = vllm_timeline(setup, jobs, cost, model_config, async_scheduling=flag)
                rows[mode] = (np.array([t.first_token[j.id] for j in jobs]),
                              np.array([t.finish[j.id] for j in jobs]),
                              time.perf_counter() - start)
            same = (np.array_equal(rows["llmsim"][0], rows["vLLM sync"][0])
                    and np.array_equal(rows["llmsim"][1], rows["vLLM sync"][1]))
            print(f"\nload {load:g} ({load * capacity:.2f} req/s), {name}: llmsim "
                  f"{'==' if same else '!='} vLLM sync, exactly")
            table = {k: stats(w.arrival, f, d, w.output_tokens) for k, (f, d, _) in rows.items()}
            cols = list(next(iter(table.values())))
            print(f"  {'':12}" + "".join(f"{c:>14}" for c in cols) + f"{'run s':>8}")
            for k, v in table.items():
                print(f"  {k:12}" + "".join(f"{v[c]:14.3f}" for c in cols)
                      + f"{rows[k][2]:8.1f}")
            a, s = table["vLLM async"], table["llmsim"]
            print("  async vs llmsim: " + ", ".join(
                f"{c} {100 * (a[c] / s[c] - 1):+.1f}%" for c in cols))


if __name__ == "__main__":
    main(sys.argv[1:])
