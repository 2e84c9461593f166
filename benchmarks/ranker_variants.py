"""Which ingredients of the cost ranker pay, judged on validation prompts only.

Trains variants of the neural ranker on one LLM's CASTILLO training prompts (5-fold
cross-fitted, head-only) and reports each variant's out-of-fold figures: every training
prompt scored by the member that did not see it (with one member, `folds=1`, the 10% of
prompts it held out; the same 10% for the same seed). No test prompt is read. Figures: the
one-server batch SJF gap (`batch_gap`), the cost share of the top 1/2/5%, Kendall tau;
95% bootstrap intervals over prompts for the batch gap.

    OMP_NUM_THREADS=1 python benchmarks/ranker_variants.py --llm Llama-3.1-8B-Instruct
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmsim.predictors import EmbeddingCache, default_cache_dir, train_predictor
from llmsim.predictors.data import other_llms_training, training_and_test
from llmsim.predictors.evaluate import evaluate_scores

VARIANTS = {
    "default (cost, tail head, prompt tokens, batch-gap selection)": {},
    "MiniLM 2 layers": {"layers": 2},
    "MiniLM 1 layer": {"layers": 1},
    "MiniLM token embeddings only (0 layers)": {"layers": 0},
    "no tail head": {"tail_threshold": 0},
    "mean-length target": {"target": "mean_length"},
    "no prompt-token input": {"prompt_feature": False},
    "with shape features (chars, lines, code fences, ...)": {"shape_features": True},
    "tail at 8k tokens": {"tail_threshold": 8000},
    "pointwise (log expected cost)": {"objective": "pointwise"},
    "selected on cost share": {"select": "cost_share"},
    "as PARS shipped (mean length, tau, one head)": {
        "target": "mean_length", "select": "tau", "tail_threshold": 0,
        "prompt_feature": False},
    "multi-model (all 13 LLMs' lengths)": {"models": "all"},
    "one member, head only (10% held out)": {"folds": 1},
    "one member, encoder fine-tuned too (10% held out)": {"folds": 1, "finetune": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/castillo")
    ap.add_argument("--llm", default="Llama-3.1-8B-Instruct")
    ap.add_argument("--cap", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="comma-separated variant numbers (1-based)")
    ap.add_argument("--set", action="append", default=[], dest="sets",
                    help="KEY=VALUE for every variant (a variant's own options win)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    train, test = training_and_test(args.data, args.llm)
    cache = EmbeddingCache(default_cache_dir(), 256)
    chosen = list(VARIANTS.items())
    if args.only:
        chosen = [chosen[int(k) - 1] for k in args.only.split(",")]
    from llmsim.predictors.cli import _parse_set

    base = dict(_parse_set(x) for x in args.sets)
    out = {}
    for name, options in chosen:
        options = {**base, **options}
        extra = ()
        if options.get("models"):
            extra = other_llms_training(args.data, train.model, options.pop("models"), test)
        started = time.perf_counter()
        predictor, card = train_predictor("pars" if "objective" not in options
                                          else options.pop("objective"), train, cache=cache,
                                          extra=extra, cap=args.cap, seed=args.seed, **options)
        seconds = time.perf_counter() - started
        held = np.flatnonzero([p in predictor.validation for p in train.prompt_id])
        judged = train.select(held)  # every prompt with folds > 1; the held-out 10% with 1
        oof = np.array([predictor.validation[p] for p in judged.prompt_id])
        r = evaluate_scores(oof, judged, cap=args.cap or None)["all"]
        r["ci"] = gap_ci(oof, judged, args.cap or None)
        out[name] = {"figures": r, "seconds": seconds, "tail_mix": card["config"]["tail_mix"],
                     "best_epochs": [m["best_epoch"] for m in card["training"]["members"]]}
        lo, hi = r["ci"]["batch_gap"]
        print(f"| {name} | {r['batch_gap']:.3f} ({lo:.3f}-{hi:.3f}) | "
              f"{r['cost_share_top1']:.3f} | {r['cost_share_top2']:.3f} | "
              f"{r['cost_share_top5']:.3f} | {r['kendall_tau']:.3f} | "
              f"{card['config']['tail_mix']} | {seconds:.0f} s |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"llm": args.llm, "cap": args.cap, "seed": args.seed,
                                         "base": base, "prompts": len(train),
                                         "variants": out},
                                        indent=1) + "\n")


def gap_ci(scores: np.ndarray, data, cap: int | None) -> dict:
    """95% bootstrap interval over prompts of the batch gap (the O(n^2) rank figures are
    left out: 3,600 prompts x 100 resamples of them take minutes)."""
    from llmsim.predictors.cost import RequestCost, capped
    from llmsim.predictors.cost_metrics import batch_gap
    from llmsim.predictors.evaluate import bootstrap_ci

    costs = RequestCost()(data.prompt_tokens, capped(data.lengths, cap))

    def figures(rows: np.ndarray) -> dict:
        return {"batch_gap": float(np.mean([batch_gap(scores[rows], costs[rows, s])
                                            for s in range(costs.shape[1])]))}

    return bootstrap_ci(figures, len(scores), 200, np.random.default_rng(0))


if __name__ == "__main__":
    main()
