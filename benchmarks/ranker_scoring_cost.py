"""What scoring a request costs in the vLLM plug-in's path, on this machine's CPU.

Each of CASTILLO's 1,110 test prompts is scored the way `vllm serve --scheduler-cls
llmsim.integrations.vllm.PolicyScheduler` scores a new request: `PriorityAssigner.priority`
on one request at a time, the predictor loaded from its folder as the plug-in loads it (no
embedding cache: a new prompt is encoded), the score mapped to vLLM's integer priority.
Per request, in ms: CPU time of the process (what the scoring costs the machine; on a
shared machine the wall time also holds the waits for the CPU) and wall time, median,
mean and P99 over the prompts, each the median of `--repeats` passes; LightGBM and prompt
length in the same process as baselines.

    python benchmarks/ranker_scoring_cost.py --predictors DIR1,DIR2 --threads 1
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from llmsim.integrations.vllm_priority import AssignerConfig, PriorityAssigner, PromptInfo
from llmsim.predictors import rank_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/castillo")
    ap.add_argument("--llm", default="Llama-3.1-8B-Instruct")
    ap.add_argument("--predictors", required=True,
                    help="comma-separated predictor folders ('length' for prompt length)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="first N prompts only")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    test = rank_data(args.data, args.llm, ("test",))
    texts, tokens = list(test.text), test.prompt_tokens
    if args.limit:
        texts, tokens = texts[:args.limit], tokens[:args.limit]
    print(f"{len(texts)} prompts one at a time, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats} passes per prompt\n")
    print("| predictor | CPU ms: median | mean | P99 | wall ms: median | mean | P99 |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    log = logging.getLogger("scoring-cost")
    for folder in args.predictors.split(","):
        policy = folder if folder == "length" else str(Path(folder))
        scorer = None
        if folder == "length":
            from llmsim.integrations.vllm_priority import PredictorScorer
            from llmsim.predictors.length import PromptLengthPredictor

            scorer = PredictorScorer.__new__(PredictorScorer)
            scorer.folder, scorer.predictor, scorer.load_error = "length", \
                PromptLengthPredictor(), None
        assigner = PriorityAssigner(AssignerConfig(policy=policy), log, scorer)
        infos = [PromptInfo(None, [0] * int(n), lambda t=t: t) for t, n in zip(texts, tokens,
                                                                             strict=True)]
        assigner.priority(infos[0])  # load the encoder and warm up outside the timing
        cpu = np.empty((args.repeats, len(infos)))
        wall = np.empty((args.repeats, len(infos)))
        for r in range(args.repeats):
            for i, info in enumerate(infos):
                c, t = time.process_time(), time.perf_counter()
                assigner.priority(info)
                cpu[r, i], wall[r, i] = time.process_time() - c, time.perf_counter() - t
        assert assigner.fallbacks == 0, f"{folder}: {assigner.fallbacks} requests unscored"
        cells = []
        for per in (cpu, wall):
            ms = np.median(per, axis=0) * 1e3
            cells += [f"{np.median(ms):.2f}", f"{ms.mean():.2f}", f"{np.percentile(ms, 99):.2f}"]
        print(f"| {Path(folder).name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
