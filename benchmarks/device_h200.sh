#!/usr/bin/env bash
# The kernel-measured side of docs/fidelity.md's "fitted vs kernel-measured" check, as run
# on a lent H200 (2026-11-28) through the workplace's device tool:
#   carry .whl (simpy's wheel: the GPU image has torch, numpy, scipy, typer, rich, but no
#   simpy), run `bash benchmarks/device_h200.sh`, results under $OUT.
# It measures the GPU's two ceilings as torch reaches them, then runs `llmsim calibrate` for
# two dense models the fitted profiles were fitted on (CALIBRATE_ARGS=--no-cuda-graphs:
# eager launches, as the first run did; docs/results/h200/eager-*). benchmarks/fitted_vs_kernels.py
# then sets the results beside the fitted profile, on any machine.
set -uo pipefail
OUT=${OUT:-llmsim-out/device}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
python3 -c "import llmsim.cli, torch; assert torch.cuda.is_available()" || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit \
    --format=csv | tee "$OUT/nvidia-smi.csv"
timeout 90 python3 benchmarks/gpu_ceilings.py > "$OUT/ceilings.json"; echo "ceilings: rc $?"
for model in qwen3-8b qwen3-14b; do
    start=$(date +%s)
    timeout 220 python3 -m llmsim calibrate --model "$model" --gpu h200 --tp 1 --dtype bf16 ${CALIBRATE_ARGS:-} \
        --flush-l2 --fidelity-points 24 --out "$OUT/h200-$model-tp1.json" --force \
        > "$OUT/calibrate-$model.log" 2>&1
    echo "$model: rc $? in $(( $(date +%s) - start )) s"
    tail -3 "$OUT/calibrate-$model.log"
done
python3 -c "import json; d = json.load(open('$OUT/ceilings.json')); \
print('copy', round(d['copy_bandwidth_Bps'] / 1e12, 2), 'TB/s; gemm', \
{k: round(v['flops_per_s'] / 1e12) for k, v in d['bf16_gemm'].items()}, 'TFLOP/s')"
