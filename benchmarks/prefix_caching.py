"""Prefix caching on Mooncake's conversation trace: hit rate, TTFT and E2E by router and
policy, and the fast simulator's speed with caching on against off.

The trace (`shared/data/mooncake/conversation_trace.jsonl`: 12,031 requests over an hour,
prompts of 12k tokens on average, `hash_ids` per 512-token block) is replayed at its
recorded arrival times on Llama-3-8B, H100 replicas (the fitted H100 profile, llmsim's
default), block size 16: engine block j takes the id of the 512-token trace block holding
its last token (BlockHashes.keys). Rows:

- caching off, least-tokens router: today's llmsim;
- caching on with round-robin, least-tokens and cache-affinity routers, FCFS;
- caching on, cache-affinity, oracle SJF (output length) against sjf-uncached (prompt
  tokens not cached on arrival + output length).

Speed: CPU seconds of the fast simulator, caching off and on, same deployment (least-tokens),
median of `--repeats` runs in this process (off and on alternating); the ratio is on / off.
The same on synthetic multi-turn sessions (`--sessions`, default 3,000: `SessionSpec`'s
defaults, seed 0, 2 replicas), whose ids go on over each answer (the next turn resends it),
so blocks get keys while requests decode. And on requests without ids (`--azure`, default
100,000: engine_scale.py's `azure` workload, Azure conversation lengths at 0.9 of one H100's
capacity, roofline costs), where nothing can hit and the pool's blocks stay anonymous. And
under the preemptive policies (`--preempting`, default srpt,mlfq: the bundled 3,000-request
sample at its capacity, one H100, `llmsim compare --load 1.0`'s run), where requests have no
ids but preemptions give them own keys, which they find again.

    python benchmarks/prefix_caching.py                    # the whole trace, 8 replicas
    python benchmarks/prefix_caching.py --requests 3000 --replicas 2 --sessions 0
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLMSIM_SHARED_DATA", REPO.parent / "shared" / "data"))
TRACE = "mooncake/conversation_trace.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=0, help="first N requests (0: all)")
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=3000,
                    help="synthetic sessions for the second speed figure (0: skip it)")
    ap.add_argument("--azure", type=int, default=100_000,
                    help="requests of the workload without ids, the third figure (0: skip it)")
    ap.add_argument("--preempting", default="srpt,mlfq",
                    help="preemptive policies for the fourth figure ('': skip it)")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    path = args.data / TRACE
    if not path.exists():
        sys.exit(f"error: {path} not found (set LLMSIM_SHARED_DATA)")

    from llmsim import Deployment, EngineConfig, get_policy, simulate
    from llmsim.traces.loaders import load_trace

    w = load_trace(path)
    if args.requests:
        w = w.head(args.requests)
    print(f"{TRACE}: {len(w):,} requests over {w.duration:.0f} s, mean prompt "
          f"{w.prompt_tokens.mean():.0f}, mean output {w.output_tokens.mean():.0f} tokens; "
          f"Llama-3-8B on {args.replicas} x H100, block size 16, fitted H100 costs")
    # what ran: a stale build runs the engine's sources, at about half the speed, with
    # only a warning (a figure measured so is not the compiled engine's)
    from llmsim.engine import compiled, prefix_cache
    print(f"engine: {'compiled' if compiled() else 'its sources (not compiled, or stale)'}, "
          f"pool steps: {'C' if prefix_cache.CompiledArrays is not None else 'NumPy'}")

    def deployment(caching: bool, router: str) -> Deployment:
        return Deployment(model="llama-3-8b", gpu="h100", num_replicas=args.replicas,
                          router=router, engine=EngineConfig(enable_prefix_caching=caching))

    rows = [("off", "least-tokens", "fcfs"), ("on", "round-robin", "fcfs"),
            ("on", "least-tokens", "fcfs"), ("on", "cache-affinity", "fcfs"),
            ("on", "cache-affinity", "sjf"), ("on", "cache-affinity", "sjf-uncached")]
    print(f"\n{'caching':8}{'router':16}{'policy':14}{'hit rate':>9}{'TTFT mean':>11}"
          f"{'TTFT p90':>10}{'E2E mean':>10}{'E2E p90':>10}{'preempt':>9}{'evictions':>11}")
    for caching, router, policy in rows:
        s = simulate(w, get_policy(policy), deployment(caching == "on", router)).summary
        evictions = sum(r.get("prefix_evictions", 0) for r in s["replicas"])
        print(f"{caching:8}{router:16}{policy:14}{s['prefix_hit_rate']:>9.1%}"
              f"{s['ttft']['mean']:>10.2f}s{s['ttft']['p90']:>9.2f}s{s['e2e']['mean']:>9.2f}s"
              f"{s['e2e']['p90']:>9.2f}s{s['preemptions']:>9}{evictions:>11,}")

    t_off, t_on = speed(w, lambda caching: deployment(caching, "least-tokens"), args.repeats)
    print(f"\nfast simulator, FCFS, least-tokens, median of {args.repeats} (CPU s): caching off "
          f"{t_off:.2f}, on {t_on:.2f}: on/off = {t_on / t_off:.2f}x")

    if args.sessions:
        import numpy as np

        from llmsim.traces.sessions import SessionSpec, synthesize_sessions

        def two_replicas(caching: bool) -> Deployment:
            return Deployment(model="llama-3-8b", gpu="h100", num_replicas=2,
                              router="least-tokens",
                              engine=EngineConfig(enable_prefix_caching=caching))

        s = synthesize_sessions(SessionSpec(sessions=args.sessions), np.random.default_rng(0))
        t_off, t_on = speed(s, two_replicas, args.repeats)
        hit = simulate(s, get_policy("fcfs"), two_replicas(True)).summary["prefix_hit_rate"]
        print(f"sessions ({args.sessions:,}: {len(s):,} requests, mean prompt "
              f"{s.prompt_tokens.mean():.0f}, output {s.output_tokens.mean():.0f} tokens; 2 "
              f"replicas; hit rate {hit:.1%}): caching off {t_off:.2f}, on {t_on:.2f}: "
              f"on/off = {t_on / t_off:.2f}x")

    if args.azure:
        import dataclasses

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from engine_scale import build

        w, one, note = build("azure", args.azure, args.data, 0, "roofline")

        def h100(caching: bool) -> Deployment:
            return dataclasses.replace(
                one, engine=dataclasses.replace(one.engine, enable_prefix_caching=caching))

        t_off, t_on = speed(w, h100, args.repeats)
        print(f"azure ({len(w):,} requests without ids, {note}, 1 replica, roofline): caching "
              f"off {t_off:.2f}, on {t_on:.2f}: on/off = {t_on / t_off:.2f}x")

    preempting = [p for p in args.preempting.split(",") if p]
    if preempting:
        from llmsim.workload_spec import WorkloadSpec

        one = Deployment()  # llama-3-8b, one H100, fitted costs, vLLM's defaults
        w, _ = WorkloadSpec(None, load=1.0, seed=0).build(one, one.cost_model())

    def engine(caching: bool) -> Deployment:
        return Deployment(engine=EngineConfig(enable_prefix_caching=caching))

    for policy in preempting:
        t_off, t_on = speed(w, engine, args.repeats, policy)
        s = {c: simulate(w, get_policy(policy), engine(c)).summary for c in (False, True)}
        print(f"{policy} (bundled sample, {len(w):,} requests at capacity, 1 H100; preemptions "
              f"{s[False]['preemptions']:,} off, {s[True]['preemptions']:,} on): caching off "
              f"{t_off:.2f}, on {t_on:.2f}: on/off = {t_on / t_off:.2f}x")


def speed(w, deployment, repeats: int, policy: str = "fcfs") -> tuple[float, float]:
    """Median CPU seconds of the fast simulator, caching off and on (alternating)."""
    from llmsim import get_policy, simulate

    runs = {False: [], True: []}
    for _ in range(repeats):
        for caching in (False, True):
            t = time.process_time()
            simulate(w, get_policy(policy), deployment(caching))
            runs[caching].append(time.process_time() - t)
    return statistics.median(runs[False]), statistics.median(runs[True])


if __name__ == "__main__":
    main()
