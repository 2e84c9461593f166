"""A trace of real prompts for `llmsim replay`: CASTILLO test prompts with one of their real
output lengths each, as an llmsim Parquet trace that carries the prompt texts (so that a
text predictor can rank the requests the client sends).

The requests are drawn from the `test` split (prompts no predictor trained on): prompts with
replacement, one of the prompt's samples at random, lengths capped at `--cap` as a server
with that `max_tokens` would run them, then divided by `--scale` (at least 1 token), so that
a CPU server gets through a queue of them in a minute or two with their order kept.
`prompt_tokens` is the LLM's own count (what a predictor reads); the server counts the text
its own way and reports it, and `llmsim validate` uses the server's count. Arrivals are
Poisson at 1 req/s: `llmsim replay --rate/--load` rescales them.

    python benchmarks/castillo_replay_trace.py --out llmsim-out/castillo-150.parquet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmsim.traces import load_castillo_pool  # noqa: E402
from llmsim.traces.native import write_parquet  # noqa: E402
from llmsim.traces.workload import Workload  # noqa: E402


def castillo_requests(data: Path, model: str, n: int, cap: int, scale: float,
                      seed: int) -> Workload:
    pool = load_castillo_pool(data, model=model, split="test")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(pool), n)
    sample = rng.integers(0, pool.samples, n)
    lengths = np.minimum(pool.output_sizes[rows, sample], cap)
    out = np.maximum(1, np.rint(lengths / scale)).astype(np.int64)
    arrival = np.concatenate([[0.0], np.cumsum(rng.exponential(1.0, n - 1))])
    return Workload(arrival, pool.input_size[rows], out, prompt_text=pool.text[rows],
                    source=f"{n} requests of CASTILLO test prompts ({data}), {model}'s "
                           f"lengths capped at {cap} and divided by {scale:g}, seed {seed}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/castillo"))
    ap.add_argument("--model", default="Llama-3.1-8B-Instruct")
    ap.add_argument("--requests", type=int, default=150)
    ap.add_argument("--cap", type=int, default=4096)
    ap.add_argument("--scale", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    w = castillo_requests(args.data, args.model, args.requests, args.cap, args.scale,
                          args.seed)
    write_parquet(w, args.out)
    print(f"{args.out}: {w.source}; output tokens mean {w.output_tokens.mean():.0f}, "
          f"max {w.output_tokens.max()}; prompt tokens mean {w.prompt_tokens.mean():.0f}")


if __name__ == "__main__":
    main()
