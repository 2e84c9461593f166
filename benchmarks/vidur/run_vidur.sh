#!/usr/bin/env bash
# usage: run_vidur.sh NUM_REQUESTS TRACE_FILE LABEL [extra Vidur args...]
# Times Vidur (microsoft/vidur @ 7d47513, checked out in $VIDUR_SRC, installed in $VIDUR_PY's
# environment) on the workload of benchmarks/engine_scale.py's `arxiv`: Llama-3-8B on one
# A100, its vLLM scheduler with batch cap 128, arxiv-summarization lengths, Poisson 2 req/s,
# random-forest execution-time predictor (trained once beforehand; its cache is reused).
# timed_main.py runs `vidur.main` phase by phase with CPU and wall timers; /usr/bin/time -v
# adds peak RSS. Output: $VIDUR_LOGS/LABEL.log (docs/speed.md reads the TIMING line).
set -euo pipefail
N=$1; TRACE=$2; LABEL=$3; shift 3
VIDUR_SRC=${VIDUR_SRC:-/work/vidur/src}
VIDUR_PY=${VIDUR_PY:-/work/vidur/.venv/bin/python}
VIDUR_LOGS=${VIDUR_LOGS:-/work/vidur/logs}
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$VIDUR_SRC"
mkdir -p "$VIDUR_LOGS"
export WANDB_MODE=disabled PYTHONPATH="$VIDUR_SRC:$HERE"
nice -n 5 /usr/bin/time -v "$VIDUR_PY" "$HERE/timed_main.py" \
  --seed 42 \
  --replica_config_device a100 \
  --replica_config_model_name meta-llama/Meta-Llama-3-8B \
  --cluster_config_num_replicas 1 \
  --replica_config_tensor_parallel_size 1 \
  --replica_config_num_pipeline_stages 1 \
  --request_generator_config_type synthetic \
  --synthetic_request_generator_config_num_requests "$N" \
  --length_generator_config_type trace \
  --trace_request_length_generator_config_trace_file "$TRACE" \
  --interval_generator_config_type poisson \
  --poisson_request_interval_generator_config_qps 2 \
  --replica_scheduler_config_type vllm \
  --vllm_scheduler_config_batch_size_cap 128 \
  --execution_time_predictor_config_type random_forrest \
  --no-metrics_config_store_plots \
  --no-metrics_config_enable_chrome_trace \
  --metrics_config_output_dir "$VIDUR_LOGS/outputs/$LABEL" \
  "$@" > "$VIDUR_LOGS/$LABEL.log" 2>&1
