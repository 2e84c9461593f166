#!/usr/bin/env bash
# Rank quality and scheduling value of the study's predictors (seed 0, uncapped; trained by
# benchmarks/ranker_train.sh) on held-out prompts, next to the noise ceiling, with 95%
# bootstrap intervals over prompts: each LLM's CASTILLO test split (both predictors of each
# kind: same-model and cross-model transfer), and Arena-Hard v2 prompts with o3-mini's and
# Sky-T1-32B's answer lengths (another prompt set, other models: transfer). Figures land
# in docs/results/rank-*.json.
#   bash benchmarks/ranker_quality.sh [CASTILLO_DIR] [STUDY_DIR]
set -euo pipefail
DATA=${1:-../shared/data/castillo}
STUDY=${2:-llmsim-out/study}
LLMSIM=${LLMSIM:-.venv/bin/llmsim}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p docs/results llmsim-out/arena
folders=()
for llm in Llama-3.1-8B-Instruct Qwen2.5-7B-Instruct-1M; do
  for kind in pars pars-v1 lgbm lgbm-cost; do
    folders+=("$STUDY/$kind-$llm-cap0-s0")
  done
done
for llm in Llama-3.1-8B-Instruct Qwen2.5-7B-Instruct-1M; do
  "$LLMSIM" evaluate-ranker "${folders[@]}" length --data "$DATA" --model "$llm" \
    --bootstrap 200 --by-dataset --json "docs/results/rank-$llm.json"
done
for answers in o3-mini-2025-01-31 sky-t1-32b; do
  "$PY" benchmarks/arena_answers.py --answers "$answers" --out "llmsim-out/arena/$answers.jsonl"
  "$LLMSIM" evaluate-ranker "${folders[@]}" length --data "llmsim-out/arena/$answers.jsonl" \
    --bootstrap 200 --json "docs/results/rank-arena-$answers.json"
done
# The variants of pars (docs/predictors.md, "Variants"), Llama's lengths capped at 4096:
# the test split and Arena-Hard (transfer), capped as they were trained
variants=()
for kind in pars pars-1 pars-ft pars-mm pars-mm5 lgbm-cost; do
  variants+=("$STUDY/$kind-Llama-3.1-8B-Instruct-cap4096-s0")
done
"$LLMSIM" evaluate-ranker "${variants[@]}" length --data "$DATA" --model Llama-3.1-8B-Instruct \
  --cap 4096 --bootstrap 200 --json docs/results/rank-variants-Llama-3.1-8B-Instruct-cap4096.json \
  --force
for answers in o3-mini-2025-01-31 sky-t1-32b; do
  "$LLMSIM" evaluate-ranker "${variants[@]}" length --data "llmsim-out/arena/$answers.jsonl" \
    --cap 4096 --bootstrap 200 --json "docs/results/rank-variants-arena-$answers-cap4096.json" \
    --force
done
