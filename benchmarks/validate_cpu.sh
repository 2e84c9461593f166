#!/usr/bin/env bash
# The whole validation loop on a CPU, for want of a GPU: calibrate llmsim's `tiny` model's
# kernels on this CPU, serve the first 200 bundled requests at 4 req/s on transformers'
# continuous batching (random weights, same shape) under FCFS and SJF, and compare each run
# with the simulator's prediction. Outputs in docs/results/validate-cpu-tiny/.
#   bash benchmarks/validate_cpu.sh
set -euo pipefail
LLMSIM=${LLMSIM:-.venv/bin/llmsim}
OUT=docs/results/validate-cpu-tiny
mkdir -p "$OUT"
"$LLMSIM" calibrate --model tiny --device cpu --dtype fp32 --max-num-batched-tokens 512 \
    --max-num-seqs 32 --repeats 5 --out "$OUT/profile.json" --force
for policy in fcfs sjf; do
  "$LLMSIM" run-transformers --requests 200 --rate 4 --policy "$policy" --num-blocks 2048 \
      --max-batch-tokens 512 --max-requests-per-batch 32 --sim-model tiny \
      --out "$OUT/run-$policy.json" --force
  "$LLMSIM" validate "$OUT/run-$policy.json" --profile "$OUT/profile.json" \
      --out "$OUT/validate-$policy" --force
done
