"""ML.ENERGY Benchmark v3 (vLLM on H100 and B200) as `MeasuredPoint`s.

Each leaderboard file (`<org>__<model>__lm-arena-chat.json`) holds one configuration per
(GPU, GPU count, max_num_seqs) with its median ITL, steady-state output throughput, mean
running batch and output-length histogram. How the runs were made (ml-energy/benchmark
configs, vLLM 0.11): one replica, max-num-batched-tokens 8192, async scheduling on, 1,024
LMArena prompts per repeat all sent at t=0, output at most 4,096 tokens, prompts longer than
max-model-len 20,480 minus that refused. gpu-memory-utilization is not set in the
lm-arena-chat configs (only image-chat sets 0.85), so vLLM's default 0.9 applies; the
`gpu_memory_utilization` argument overrides it. Prompt lengths were not published: the
points carry a prompt family (the tokenizer) and the fit treats their distribution as a
nuisance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.config import EngineConfig
from .gpus import get_gpu
from .measured import MeasuredPoint
from .memory import kv_cache_blocks
from .shapes import get_model

SOURCE = "ML.ENERGY Benchmark v3 (ml-energy/leaderboard @ 0cd52da, vLLM 0.11)"
MAX_OUTPUT = 4096
MAX_PROMPT = 20480 - MAX_OUTPUT

# model id -> llmsim preset
MODELS = {
    "Qwen/Qwen3-8B": "qwen3-8b",
    "Qwen/Qwen3-14B": "qwen3-14b",
    "Qwen/Qwen3-32B": "qwen3-32b",
    "Qwen/Qwen3-30B-A3B-Instruct-2507": "qwen3-30b-a3b",
    "google/gemma-3-12b-it": "gemma-3-12b",
    "google/gemma-3-27b-it": "gemma-3-27b",
}
# Every model ran the same LMArena prompts: one prompt-length distribution for all of them
# (the Qwen and Gemma tokenizers count the same text a few percent apart; ignored).
PROMPT_FAMILY = "lmarena-chat"
# Engine settings the benchmark's configs override, by (model id, GPU).
BLOCK_SIZE = {("google/gemma-3-12b-it", "B200"): 32}  # "FlashInfer bug" in its config


@dataclass(frozen=True, slots=True)
class Skipped:
    file: str
    what: str
    why: str


def output_lengths(hist: dict, n: int | None = None) -> np.ndarray:
    """One output length per request from a histogram (`bins` edges, `counts`): a bin's
    requests at evenly spaced points inside it; the last bin's at its upper edge when that
    edge is the benchmark's output cap (those requests were cut there)."""
    edges = np.asarray(hist["bins"], float)
    counts = np.asarray(hist["counts"], int)
    if len(edges) != len(counts) + 1 or (counts < 0).any():
        raise ValueError("output_length_distribution: bins must be counts + 1 edges")
    out = []
    for i, c in enumerate(counts):
        if not c:
            continue
        lo, hi = edges[i], edges[i + 1]
        if i == len(counts) - 1 and hi == MAX_OUTPUT:
            out.append(np.full(c, MAX_OUTPUT))
        else:
            out.append(lo + (np.arange(c) + 0.5) / c * (hi - lo))
    x = np.clip(np.rint(np.concatenate(out)), 1, MAX_OUTPUT).astype(np.int64)
    assert n is None or len(x) == n
    return x


def load_mlenergy(folder: str | Path, gpus: tuple[str, ...] = ("H100", "B200"),
                  gpu_memory_utilization: float = 0.9, prefix_caching: bool = False
                  ) -> tuple[list[MeasuredPoint], list[Skipped]]:
    """Every configuration of every known model in `folder` on these GPUs; what cannot be
    simulated is returned as Skipped with the reason. `prefix_caching`: simulate the runs
    with it, as the benchmark's vLLM ran them (its default): a preempted request finds its
    own blocks again. The bundled fits were made without it (a preempted request recomputes
    everything)."""
    folder = Path(folder)
    files = sorted(folder.glob("*__lm-arena-chat.json"))
    if not files:
        raise FileNotFoundError(f"{folder}: no ML.ENERGY *__lm-arena-chat.json files")
    points, skipped = [], []
    for f in files:
        d = json.loads(f.read_text())
        mid = d.get("model_id", "")
        if mid not in MODELS:
            skipped.append(Skipped(f.name, mid, "no llmsim preset for this model"))
            continue
        preset = MODELS[mid]
        model = get_model(preset)
        for c in d["configurations"]:
            gpu_name = c["gpu_model"]
            what = f"{gpu_name} x{c['num_gpus']} max_num_seqs={c['max_num_seqs']}"
            if gpu_name not in gpus:
                continue
            par = c.get("parallelization", {})
            tp = int(par.get("tensor_parallel", 1))
            if int(c["num_gpus"]) != tp:
                if par.get("expert_parallel", 1) == c["num_gpus"] and model.is_moe:
                    tp = int(c["num_gpus"])  # attention TP + experts EP over the same GPUs
                else:
                    skipped.append(Skipped(f.name, what, f"{c['num_gpus']} GPUs at TP {tp}"))
                    continue
            gpu = get_gpu(gpu_name)
            mns = int(c["max_num_seqs"])
            block = BLOCK_SIZE.get((mid, gpu_name), 16)
            blocks = kv_cache_blocks(model, gpu, tp, gpu_memory_utilization, block, 8192, mns)
            engine = EngineConfig(max_num_seqs=mns, max_num_batched_tokens=8192,
                                  block_size=block,
                                  gpu_memory_utilization=gpu_memory_utilization,
                                  num_gpu_blocks=blocks,
                                  enable_prefix_caching=prefix_caching)
            hist = c["output_length_distribution"]
            out = output_lengths(hist, int(sum(hist["counts"])))
            name = mid.split("/")[-1]
            points.append(MeasuredPoint(
                label=f"{name} {gpu_name} tp{tp} max_num_seqs={mns}",
                group=f"{name} {gpu_name}",
                model=model, tp=tp, engine=engine, output_tokens=out,
                prompt_family=PROMPT_FAMILY,
                median_itl_s=float(c["median_itl_ms"]) / 1e3,
                steady_output_tps=float(c["output_throughput_tokens_per_sec"]),
                mean_running=float(c["avg_batch_size"]),
                meta={"gpu": gpu_name.lower(), "model_id": mid, "preset": preset,
                      "source": f"{SOURCE}: {f.name}", "max_num_seqs": mns,
                      "avg_output_len": float(c["avg_output_len"]),
                      "p90_itl_ms": float(c["p90_itl_ms"])}))
    return points, skipped
