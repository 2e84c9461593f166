#!/usr/bin/env bash
# The whole validation loop on a CPU, for want of a GPU: calibrate llmsim's `tiny` model's
# kernels on this CPU; measure the engine's own per-step overhead (one request alone: real
# TPOT minus the simulated one); serve the first 200 bundled requests at 4 req/s on
# transformers' continuous batching (random weights, same shape) under FCFS and SJF; compare
# each run with the simulator, without and with that overhead.
# Outputs in docs/results/validate-cpu-tiny/.
#   bash benchmarks/validate_cpu.sh
set -euo pipefail
LLMSIM=${LLMSIM:-.venv/bin/llmsim}
PY=${PY:-.venv/bin/python}
OUT=docs/results/validate-cpu-tiny
ENGINE=(--num-blocks 2048 --max-batch-tokens 512 --max-requests-per-batch 32 --sim-model tiny)
mkdir -p "$OUT"
"$LLMSIM" calibrate --model tiny --device cpu --dtype fp32 --max-num-batched-tokens 512 \
    --max-num-seqs 32 --repeats 5 --out "$OUT/profile.json" --force

# One request at a time: 5 requests, 10 s apart, 64-token prompts, 300 tokens out.
printf 'arrival_s,prompt_tokens,output_tokens\n0,64,300\n10,64,300\n20,64,300\n30,64,300\n40,64,300\n' \
    > "$OUT/alone.csv"
"$LLMSIM" run-transformers --trace "$OUT/alone.csv" "${ENGINE[@]}" --out "$OUT/run-alone.json" --force
"$LLMSIM" validate "$OUT/run-alone.json" --profile "$OUT/profile.json" --out "$OUT/validate-alone" --force
OVERHEAD_MS=$("$PY" -c "
import json; t = json.load(open('$OUT/validate-alone/validation.json'))['metrics']['tpot']
print(round(1e3 * (t['real']['mean'] - t['sim']['mean']), 3))")
echo "engine overhead per iteration: $OVERHEAD_MS ms" | tee "$OUT/engine-overhead-ms.txt"

for policy in fcfs sjf; do
  "$LLMSIM" run-transformers --requests 200 --rate 4 --policy "$policy" "${ENGINE[@]}" \
      --out "$OUT/run-$policy.json" --force
  "$LLMSIM" validate "$OUT/run-$policy.json" --profile "$OUT/profile.json" \
      --out "$OUT/validate-$policy" --force
  "$LLMSIM" validate "$OUT/run-$policy.json" --profile "$OUT/profile.json" \
      --engine-overhead-ms "$OVERHEAD_MS" --out "$OUT/validate-$policy-overhead" --force
done
