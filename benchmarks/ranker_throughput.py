"""Scoring throughput of each predictor on this machine's CPU, in prompts per second.

Scores CASTILLO's 1,110 test prompts (Llama-3.1-8B lengths) with each trained predictor
from `benchmarks/ranker_quality.sh`: neural predictors cold (every prompt through the
MiniLM encoder, no embedding cache) and warm (embeddings cached: only the head runs);
LightGBM from raw text (feature extraction + trees); prompt length from token counts.
Median of `--repeats` runs, and each figure as a ratio to LightGBM's, measured in the
same process.

    python benchmarks/ranker_throughput.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from llmsim.predictors import EmbeddingCache, load_predictor, rank_data

KINDS = ("pars", "pointwise", "listmle", "lgbm", "length")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/castillo")
    ap.add_argument("--predictors", default="llmsim-out/predictors")
    ap.add_argument("--llm", default="Llama-3.1-8B-Instruct")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    test = rank_data(args.data, args.llm, ("test",))
    texts, tokens = list(test.text), test.prompt_tokens
    rates: dict[str, float] = {}
    for kind in KINDS:
        p = load_predictor(Path(args.predictors) / f"{kind}-{args.llm}")
        if hasattr(p, "cache"):
            p.encoder  # load the encoder outside the timed runs  # noqa: B018
            p.cache = None
            rates[f"{kind} (cold: encoder + head)"] = _rate(p, texts, tokens, args.repeats)
            with tempfile.TemporaryDirectory() as tmp:
                p.cache = EmbeddingCache(tmp, p.config.max_tokens)
                p.score(texts, tokens)  # fill the cache
                rates[f"{kind} (warm: cached embeddings)"] = _rate(p, texts, tokens,
                                                                   args.repeats)
        else:
            rates[kind] = _rate(p, texts, tokens, args.repeats)
    base = rates["lgbm"]
    print(f"{len(texts)} prompts, torch threads {torch.get_num_threads()}, median of "
          f"{args.repeats}\n")
    print("| predictor | prompts/s | vs LightGBM |\n|---|---:|---:|")
    for name, r in rates.items():
        print(f"| {name} | {r:,.0f} | {r / base:.2g}x |")


def _rate(predictor, texts, tokens, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predictor.score(texts, tokens)
        times.append(time.perf_counter() - t)
    return len(texts) / float(np.median(times))


if __name__ == "__main__":
    main()
