#!/usr/bin/env bash
# Where the live vLLM-CPU server's time goes when it is saturated: the study's all-at-once
# runs (REQUESTS requests of the bundled Azure trace sent together, fcfs) at each of SEATS,
# with the CPU seconds of every process and thread of the server (and of the client) read
# from /proc while the run lasts (benchmarks/cpu_accounting.py). vLLM pins its model worker
# to one core; what else shares the other core (engine core, API server, client) and how
# busy it is says whether the front end, not the model, sets the ceiling (issue 21).
#   bash benchmarks/vllm_cpu_frontend.sh     (about 12 minutes on a 2-core box)
# Needs the vllm-cpu venv of docs/vllm.md (VENV, default .venv-vllm-cpu) and the study's
# tiny model (STUDY: the folder of validate_vllm_cpu_study.sh, which makes it).
set -euo pipefail
VENV=${VENV:-.venv-vllm-cpu}
PY=$VENV/bin/python
LLMSIM=$VENV/bin/llmsim
STUDY=${STUDY:-llmsim-out/validate-vllm-cpu-study}
OUT=${OUT:-$STUDY/frontend}
REQUESTS=${REQUESTS:-150}
SEATS_LIST=${SEATS_LIST:-1 2 4}
SEQS=4
BATCH=2048
PORT=${PORT:-8321}
MODEL=$STUDY/model
mkdir -p "$OUT"
# shellcheck source=benchmarks/vllm_cpu_server.sh
source "$(dirname "$0")/vllm_cpu_server.sh"
for seats in $SEATS_LIST; do
    run=$OUT/run-saturated-$seats.json
    [ -f "$run" ] && continue
    start_server fcfs "$seats"
    "$PY" benchmarks/cpu_accounting.py "$SERVER" "$OUT/cpu-$seats.json" -- \
        "$LLMSIM" replay --model tiny-llama --endpoint "http://127.0.0.1:$PORT" \
        "${ENGINE[@]}" --max-num-seqs "$seats" --out "$run" --force \
        --requests "$REQUESTS" --rate 10000 --server-policy fcfs | tee "$OUT/cpu-$seats.txt"
    stop_server
done
