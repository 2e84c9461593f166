"""Summarise one Vidur output folder: request metrics (mean/median/p99) and batch stats.
Runs in Vidur's environment (pandas): python summarize.py OUTPUT_DIR"""
import json
import os
import sys

import pandas as pd

d = sys.argv[1]
r = pd.read_csv(os.path.join(d, "request_metrics.csv"))
cols = ["request_e2e_time", "prefill_e2e_time", "request_scheduling_delay",
        "decode_time_execution_plus_preemption_normalized", "request_num_prefill_tokens",
        "request_num_decode_tokens", "request_num_restarts"]
out = {"requests": len(r)}
for c in cols:
    if c in r:
        out[c] = {"mean": round(r[c].mean(), 4), "median": round(r[c].median(), 4),
                  "p99": round(r[c].quantile(0.99), 4)}
bs = pd.read_csv(os.path.join(d, "plots", "batch_size.csv"))
out["batch_size_cdf_sketch_rows"] = len(bs)
for f in ["replica_1_memory_usage.json", "replica_1_stage_1_busy_time_percent.json",
          "replica_1_stage_1_mfu.json"]:
    p = os.path.join(d, "plots", f)
    if os.path.exists(p):
        out[f[:-5]] = json.load(open(p))
print(json.dumps(out, indent=1))
