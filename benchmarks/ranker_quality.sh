#!/usr/bin/env bash
# Train every predictor on Llama-3.1-8B's and Qwen2.5-7B's CASTILLO lengths (head-only,
# defaults, seed 0), then evaluate each on both models' held-out test split (same-model and
# cross-model transfer), next to the noise ceiling. Figures land in docs/results/.
#   bash benchmarks/ranker_quality.sh [CASTILLO_DIR]
set -euo pipefail
DATA=${1:-../shared/data/castillo}
LLMSIM=${LLMSIM:-.venv/bin/llmsim}
OUT=llmsim-out/predictors
mkdir -p docs/results
for llm in Llama-3.1-8B-Instruct Qwen2.5-7B-Instruct-1M; do
  for kind in pars pointwise listmle lgbm length; do
    "$LLMSIM" train --data "$DATA" --model "$llm" --predictor "$kind" \
      --out "$OUT/$kind-$llm" --force
  done
done
for llm in Llama-3.1-8B-Instruct Qwen2.5-7B-Instruct-1M; do
  "$LLMSIM" evaluate-ranker "$OUT"/*-Llama-3.1-8B-Instruct "$OUT"/*-Qwen2.5-7B-Instruct-1M \
    --data "$DATA" --model "$llm" --by-dataset --json "docs/results/rank-$llm.json"
done
