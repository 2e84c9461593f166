"""A small CASTILLO folder whose lengths a prompt-only predictor *can* learn: each prompt's
task word sets its typical answer length, each of its 10 samples is noisy around it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASKS = {  # task cue -> typical output tokens
    "Answer yes or no:": 4, "Give one word for": 8, "Name the capital of": 15,
    "Summarize briefly": 60, "Explain why": 180, "Write a Python function that": 400,
    "Write a detailed essay about": 900,
}
TOPICS = ["rivers", "sorting lists", "the moon", "tax law", "bread", "graph search", "owls",
          "glaciers", "compilers", "jazz", "soil", "trains", "prime numbers", "tea", "maps"]
MODELS = ("meta-llama--Llama-3.1-8B-Instruct", "Qwen--Qwen2.5-7B-Instruct-1M")


def write_castillo(folder: Path, prompts_per_split=(70, 30, 40), seed: int = 0) -> Path:
    """Splits train/validate/test; two models (Qwen's answers 30% longer)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    prompts, lengths = [], []
    k = 0
    for split, n in zip(("train", "validate", "test"), prompts_per_split, strict=True):
        for _ in range(n):
            cue = list(TASKS)[rng.integers(len(TASKS))]
            text = f"{cue} {TOPICS[rng.integers(len(TOPICS))]} (case {k})."
            dataset = "Code" if "Python" in cue else "Chat"
            prompts.append({"prompt_id": f"p{k}", "dataset": dataset, "split": split,
                            "category": "x", "prompt_text": text})
            for m, model in enumerate(MODELS):
                mean = TASKS[cue] * (1.3 if m else 1.0)
                sizes = np.maximum(1, rng.lognormal(np.log(mean), 0.25, 10)).astype(int)
                lengths.append({"sample_id": f"s{k}-{m}", "prompt_id": f"p{k}", "model": model,
                                "dataset": dataset, "split": split,
                                "input_size": len(text.split()) + 20,
                                "output_sizes": sizes.tolist()})
            k += 1
    _jsonl(folder / "castillo_prompts.jsonl", prompts)
    _jsonl(folder / "castillo_output_lengths.jsonl", lengths)
    return folder


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
